//! Named, bounded channels whose traffic and drops are metrics
//! (`nuvol_channel_sent_total{channel=...}`,
//! `nuvol_channel_dropped_total{channel=...}`, `nuvol_channel_capacity`).
//!
//! Architecture Invariant: every queue between the agent's tasks is bounded
//! and has a name. A sender that must not wait (the gossip driver, a socket
//! reader) uses [`Tx::try_send`], which counts what a full queue drops; a
//! sender that may wait uses [`Tx::send`]. Broadcast receivers that fall
//! behind count the events they missed as drops of their channel.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

/// The agent's channel counters. Cheap to clone; every clone counts into
/// the same metrics.
#[derive(Clone, Default, Debug)]
pub struct Channels {
    sent: Family<ChannelLabel, Counter>,
    dropped: Family<ChannelLabel, Counter>,
    capacity: Family<ChannelLabel, Gauge>,
}

/// The counters of one channel.
#[derive(Clone, Debug)]
pub struct ChannelCounters {
    name: &'static str,
    sent: Counter,
    dropped: Counter,
}

impl ChannelCounters {
    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn sent(&self) {
        self.sent.inc();
    }
    pub fn dropped(&self, n: u64) {
        self.dropped.inc_by(n);
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped.get()
    }
}

impl Channels {
    /// Add the families to `r` (prefix `nuvol_channel_`).
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("channel");
        r.register(
            "sent",
            "Items sent on the agent's bounded channels",
            self.sent.clone(),
        );
        r.register(
            "dropped",
            "Items a full bounded channel dropped, or a lagging broadcast receiver missed",
            self.dropped.clone(),
        );
        r.register(
            "capacity",
            "Capacity of the agent's bounded channels",
            self.capacity.clone(),
        );
    }

    /// The counters of channel `name` (shared by every channel of that name).
    pub fn counters(&self, name: &'static str, capacity: usize) -> ChannelCounters {
        let l = ChannelLabel {
            channel: name.to_owned(),
        };
        self.capacity
            .get_or_create(&l)
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        ChannelCounters {
            name,
            sent: self.sent.get_or_create(&l).clone(),
            dropped: self.dropped.get_or_create(&l).clone(),
        }
    }

    /// A bounded mpsc channel named `name`.
    pub fn mpsc<T>(&self, name: &'static str, capacity: usize) -> (Tx<T>, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Tx {
                inner: tx,
                counters: self.counters(name, capacity),
            },
            rx,
        )
    }

    /// A broadcast channel named `name`.
    pub fn broadcast<T: Clone>(&self, name: &'static str, capacity: usize) -> Bus<T> {
        Bus {
            tx: broadcast::channel(capacity.max(1)).0,
            counters: self.counters(name, capacity),
        }
    }
}

/// The queue was full: the item was dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("channel full or closed")]
pub struct Dropped;

/// The receiving side is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("channel closed")]
pub struct Closed;

/// The sending side of a named bounded channel.
#[derive(Debug)]
pub struct Tx<T> {
    inner: mpsc::Sender<T>,
    counters: ChannelCounters,
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Tx {
            inner: self.inner.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<T> Tx<T> {
    /// Send without waiting; a full channel drops `v` and counts it.
    pub fn try_send(&self, v: T) -> Result<(), Dropped> {
        match self.inner.try_send(v) {
            Ok(()) => {
                self.counters.sent();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped(1);
                tracing::debug!(channel = self.counters.name, "channel full: item dropped");
                Err(Dropped)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Dropped),
        }
    }

    /// Send, waiting for room (back-pressure).
    pub async fn send(&self, v: T) -> Result<(), Closed> {
        self.inner.send(v).await.map_err(|_| Closed)?;
        self.counters.sent();
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    pub fn counters(&self) -> &ChannelCounters {
        &self.counters
    }
}

/// A named broadcast channel.
#[derive(Debug)]
pub struct Bus<T> {
    tx: broadcast::Sender<T>,
    counters: ChannelCounters,
}

impl<T> Clone for Bus<T> {
    fn clone(&self) -> Self {
        Bus {
            tx: self.tx.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<T: Clone> Bus<T> {
    /// Send to every current subscriber (none is fine).
    pub fn send(&self, v: T) {
        if self.tx.send(v).is_ok() {
            self.counters.sent();
        }
    }

    pub fn subscribe(&self) -> BusRx<T> {
        BusRx {
            rx: self.tx.subscribe(),
            counters: self.counters.clone(),
        }
    }
}

/// Why [`BusRx::recv`] returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// This receiver fell behind and missed `n` items (counted as drops).
    #[error("missed {0} items")]
    Lagged(u64),
    #[error("channel closed")]
    Closed,
}

/// A subscription to a [`Bus`].
#[derive(Debug)]
pub struct BusRx<T> {
    rx: broadcast::Receiver<T>,
    counters: ChannelCounters,
}

impl<T: Clone> BusRx<T> {
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        match self.rx.recv().await {
            Ok(v) => Ok(v),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.counters.dropped(n);
                tracing::debug!(
                    channel = self.counters.name,
                    missed = n,
                    "subscriber lagged"
                );
                Err(RecvError::Lagged(n))
            }
            Err(broadcast::error::RecvError::Closed) => Err(RecvError::Closed),
        }
    }

    /// The underlying receiver (for stream adapters); lags it reports are
    /// not counted.
    pub fn into_inner(self) -> broadcast::Receiver<T> {
        self.rx
    }

    pub fn counters(&self) -> &ChannelCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drops_and_lags_are_counted() {
        let ch = Channels::default();
        let (tx, mut rx) = ch.mpsc::<u32>("test", 1);
        assert!(tx.try_send(1).is_ok());
        assert_eq!(tx.try_send(2), Err(Dropped));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.counters().dropped_total(), 1);

        let bus = ch.broadcast::<u32>("bus", 1);
        let mut sub = bus.subscribe();
        bus.send(1);
        bus.send(2);
        assert_eq!(sub.recv().await, Err(RecvError::Lagged(1)));
        assert_eq!(sub.recv().await, Ok(2));
        assert_eq!(sub.counters().dropped_total(), 1);

        let mut r = Registry::default();
        ch.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("channel_dropped_total{channel=\"test\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("channel_capacity{channel=\"bus\"} 1"),
            "{text}"
        );
    }
}
