//! memberlist's transmit-limited broadcast queue: each message is piggybacked
//! on gossip until it has been sent `retransmit_limit` times; the least-sent,
//! newest messages go first; a newer message about the same node replaces an
//! older one.

/// A queued broadcast.
#[derive(Debug, Clone)]
struct Item {
    /// Messages with the same key invalidate each other (memberlist: node name).
    key: Option<String>,
    msg: Vec<u8>,
    transmits: usize,
    id: u64,
    /// Reported through [`Queue::take_finished`] when sent out or replaced.
    notify: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Queue {
    items: Vec<Item>,
    next_id: u64,
    finished: Vec<u64>,
    /// Messages dropped because the queue was over its limit.
    pub dropped: u64,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queue `msg`. `key` replaces a queued message with the same key.
    pub fn push(&mut self, key: Option<String>, msg: Vec<u8>, notify: Option<u64>) {
        if let Some(k) = &key {
            let finished = &mut self.finished;
            self.items.retain(|it| {
                let same = it.key.as_deref() == Some(k.as_str());
                if same {
                    if let Some(n) = it.notify {
                        finished.push(n);
                    }
                }
                !same
            });
        }
        self.next_id += 1;
        self.items.push(Item {
            key,
            msg,
            transmits: 0,
            id: self.next_id,
            notify,
        });
    }

    /// Take messages that fit in `limit` bytes with `overhead` bytes each,
    /// counting a transmission for each and retiring those past `max_transmits`.
    pub fn take(&mut self, overhead: usize, limit: usize, max_transmits: usize) -> Vec<Vec<u8>> {
        if self.items.is_empty() {
            return Vec::new();
        }
        self.items
            .sort_by(|a, b| a.transmits.cmp(&b.transmits).then(b.id.cmp(&a.id)));
        let mut used = 0;
        let mut out = Vec::new();
        for it in self.items.iter_mut() {
            let need = overhead + it.msg.len();
            if used + need > limit {
                continue;
            }
            used += need;
            out.push(it.msg.clone());
            it.transmits += 1;
        }
        let finished = &mut self.finished;
        self.items.retain(|it| {
            let done = it.transmits >= max_transmits.max(1);
            if done {
                if let Some(n) = it.notify {
                    finished.push(n);
                }
            }
            !done
        });
        out
    }

    /// Drop the oldest messages beyond `max` (serf's MaxQueueDepth).
    pub fn prune(&mut self, max: usize) {
        if self.items.len() <= max {
            return;
        }
        self.items.sort_by_key(|it| it.id);
        let extra = self.items.len() - max;
        for it in self.items.drain(..extra) {
            if let Some(n) = it.notify {
                self.finished.push(n);
            }
        }
        self.dropped += extra as u64;
    }

    /// Notification ids of broadcasts that finished since the last call.
    pub fn take_finished(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.finished)
    }

    pub fn clear(&mut self) {
        for it in self.items.drain(..) {
            if let Some(n) = it.notify {
                self.finished.push(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmits_then_retires() {
        let mut q = Queue::default();
        q.push(None, vec![1; 10], Some(7));
        for _ in 0..3 {
            assert_eq!(q.take(2, 100, 3).len(), 1);
        }
        assert!(q.is_empty());
        assert_eq!(q.take_finished(), vec![7]);
    }

    #[test]
    fn newest_least_sent_first_and_limit() {
        let mut q = Queue::default();
        q.push(None, vec![1; 50], None);
        q.push(None, vec![2; 50], None);
        let got = q.take(0, 60, 10);
        assert_eq!(got, vec![vec![2; 50]]);
        let got = q.take(0, 60, 10);
        assert_eq!(got, vec![vec![1; 50]], "least transmitted goes next");
    }

    #[test]
    fn same_key_invalidates() {
        let mut q = Queue::default();
        q.push(Some("a".into()), vec![1], Some(1));
        q.push(Some("a".into()), vec![2], None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take_finished(), vec![1]);
        q.prune(0);
        assert_eq!(q.dropped, 1);
    }
}
