//! The supervisor and the registrations, with small test components in
//! real in-process agents (real sockets on loopback).

use nuvol_agent::config::NoSettings;
use nuvol_agent::{
    AgentBuilder, BuildCtx, BuildError, Component, ComponentError, ComponentState, RunCtx,
    RunningAgent, StreamError, StreamHandler,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test components did, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Records its start and stop; checks the cluster still works while it
/// drains.
struct Recorder<const N: usize>;

impl<const N: usize> Component for Recorder<N> {
    type Config = NoSettings;
    const NAME: &'static str = ["first", "second", "third"][N];

    fn build(_: NoSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Recorder))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let log = ctx.registry().get::<Log>().unwrap();
        log.push(format!("start {}", Self::NAME));
        ctx.ready();
        ctx.stopping().await;
        // Draining: the gossip layer is still there.
        let ok = ctx.cluster().members().await.is_ok();
        log.push(format!("stop {} cluster={ok}", Self::NAME));
        Ok(())
    }
}

/// Fails its first two runs.
struct Flaky {
    runs: Arc<AtomicUsize>,
}

impl Component for Flaky {
    type Config = NoSettings;
    const NAME: &'static str = "flaky";

    fn build(_: NoSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Flaky {
            runs: Arc::default(),
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        match self.runs.fetch_add(1, Ordering::SeqCst) {
            0 => Err(ComponentError::msg("port 1 in use")),
            1 => panic!("second run panics"),
            _ => {
                ctx.ready();
                ctx.stopping().await;
                Ok(())
            }
        }
    }
}

/// A critical component that cannot start.
struct Broken;

impl Component for Broken {
    type Config = NoSettings;
    const NAME: &'static str = "broken";
    const CRITICAL: bool = true;

    fn build(_: NoSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Broken))
    }

    async fn run(&mut self, _ctx: &RunCtx) -> Result<(), ComponentError> {
        Err(ComponentError::msg("store locked"))
    }
}

/// Ignores the stop signal.
struct Stubborn;

impl Component for Stubborn {
    type Config = NoSettings;
    const NAME: &'static str = "stubborn";

    fn build(_: NoSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Stubborn))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        ctx.ready();
        std::future::pending::<()>().await;
        Ok(())
    }
}

fn flags(dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--node=sup".to_owned(),
        "--bind=127.0.0.1:0".to_owned(),
        "--profile=local".to_owned(),
        format!("--data-dir={}", dir.display()),
    ];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

async fn start(
    b: AgentBuilder,
    dir: &std::path::Path,
    extra: &[&str],
) -> Result<RunningAgent, nuvol_agent::StartError> {
    let f = flags(dir, extra);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    b.configure_from("", &f).unwrap().start().await
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn components_start_in_order_and_stop_in_reverse_while_gossip_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let agent = start(
        AgentBuilder::new()
            .provide(log.clone())
            .with::<Recorder<0>>()
            .with::<Recorder<1>>()
            .with::<Recorder<2>>(),
        dir.path(),
        &[],
    )
    .await
    .unwrap();
    let states: Vec<(String, ComponentState)> = agent
        .status()
        .into_iter()
        .map(|s| (s.name, s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("first".to_owned(), ComponentState::Running),
            ("second".to_owned(), ComponentState::Running),
            ("third".to_owned(), ComponentState::Running),
        ]
    );
    let cluster = agent.cluster().clone();
    let bound = cluster.bound();
    agent.shutdown(false).await;
    assert_eq!(
        log.lines(),
        [
            "start first",
            "start second",
            "start third",
            "stop third cluster=true",
            "stop second cluster=true",
            "stop first cluster=true",
        ]
    );
    // Then the driver stopped, and the gossip thread took its sockets and
    // tasks with it: the cluster answers no more and the address is free.
    assert!(matches!(
        cluster.members().await,
        Err(nuvol_agent::ClusterError::Stopped)
    ));
    assert!(std::net::TcpStream::connect_timeout(&bound, Duration::from_secs(1)).is_err());
    std::net::UdpSocket::bind(bound).expect("UDP port released");
    std::net::TcpListener::bind(bound).expect("TCP port released");
}

#[tokio::test]
async fn a_failed_component_is_restarted_with_backoff_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(
        AgentBuilder::new()
            .with::<Flaky>()
            .with::<nuvol_agent::components::Metrics>(),
        dir.path(),
        &[],
    )
    .await
    .unwrap();
    // The first failure is shown while the supervisor waits to retry.
    let flaky = || {
        agent
            .status()
            .into_iter()
            .find(|s| s.name == "flaky")
            .unwrap()
    };
    let first = flaky();
    assert!(!first.critical);
    assert_eq!(first.last_error.as_deref(), Some("port 1 in use"));
    assert!(
        matches!(
            first.state,
            ComponentState::Failed | ComponentState::Restarting
        ),
        "{first:?}"
    );
    eventually("flaky running after two restarts", || {
        flaky().state == ComponentState::Running
    })
    .await;
    let s = flaky();
    assert_eq!(s.restarts, 2);
    assert_eq!(s.last_error.as_deref(), Some("panicked: second run panics"));
    // Gossip never noticed.
    assert_eq!(agent.cluster().members().await.unwrap().len(), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, agent.registry().metrics()).unwrap();
    assert!(
        text.contains("nuvol_component_restarts_total{component=\"flaky\"} 2"),
        "{text}"
    );
    agent.shutdown(false).await;
}

#[tokio::test]
async fn a_critical_component_that_cannot_start_stops_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let err = start(
        AgentBuilder::new()
            .provide(log.clone())
            .with::<Recorder<0>>()
            .with::<Broken>()
            .with::<Recorder<1>>(),
        dir.path(),
        &[],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "component broken failed to start: store locked"
    );
    // What started before it was stopped again; what comes after never ran.
    assert_eq!(log.lines(), ["start first", "stop first cluster=true"]);
}

#[tokio::test]
async fn a_component_that_ignores_stop_is_aborted_after_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(
        AgentBuilder::new().with::<Stubborn>(),
        dir.path(),
        &["--drain-timeout=200ms"],
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(30), agent.shutdown(false))
        .await
        .expect("shutdown finishes");
}

/// Claims a tag key, a stream protocol and a query name.
struct Claimer<const N: usize>;

impl<const N: usize> Component for Claimer<N> {
    type Config = NoSettings;
    const NAME: &'static str = ["claimer-a", "claimer-b"][N];

    fn build(_: NoSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        // The test picks what to claim through a provided value.
        match ctx.get::<Claim>().map_or("query", |c| c.0) {
            "tag" => {
                ctx.own_tags(&["mine"])?;
            }
            "stream" => {
                ctx.stream_protocol(9, Arc::new(Echo))?;
            }
            _ => {
                ctx.query_handler("_nuvol_test")?;
            }
        }
        Ok(Some(Claimer))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        ctx.ready();
        ctx.stopping().await;
        Ok(())
    }
}

#[derive(Clone)]
struct Claim(&'static str);

struct Echo;

impl StreamHandler for Echo {
    fn handle(
        &self,
        _from: std::net::SocketAddr,
        request: Vec<u8>,
    ) -> futures::future::BoxFuture<'static, Result<Arc<Vec<u8>>, StreamError>> {
        Box::pin(async move {
            let mut reply = request;
            reply.extend_from_slice(b" back");
            Ok(Arc::new(reply))
        })
    }
}

#[tokio::test]
async fn two_components_claiming_the_same_thing_is_a_build_error() {
    for (claim, want) in [
        ("tag", "component claimer-b: tag \"mine\" is already owned by the claimer-a component"),
        ("stream", "component claimer-b: stream protocol 9 is already served by the claimer-a component"),
        ("query", "component claimer-b: query \"_nuvol_test\" is already answered by the claimer-a component"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let err = start(
            AgentBuilder::new()
                .provide(Claim(claim))
                .with::<Claimer<0>>()
                .with::<Claimer<1>>(),
            dir.path(),
            &[],
        )
        .await
        .err()
        .unwrap();
        assert_eq!(err.to_string(), want);
        assert!(!dir.path().join("catalog.redb").exists());
    }
}

/// Answers `_nuvol_echo` queries and stream protocol 9.
struct Responder;

impl Component for Responder {
    type Config = NoSettings;
    const NAME: &'static str = "responder";

    fn build(_: NoSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        ctx.stream_protocol(9, Arc::new(Echo))?;
        let inbox = ctx.query_handler("_nuvol_echo")?;
        ctx.provide(Inbox(Arc::new(tokio::sync::Mutex::new(inbox))));
        Ok(Some(Responder))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let inbox = ctx.registry().get::<Inbox>().unwrap();
        let mut inbox = inbox.0.lock().await;
        ctx.ready();
        loop {
            tokio::select! {
                q = inbox.recv() => {
                    let Some(q) = q else { return Ok(()) };
                    let mut out = b"echo:".to_vec();
                    out.extend_from_slice(&q.payload);
                    ctx.cluster().respond(q.id, out).await?;
                }
                () = ctx.stopping() => return Ok(()),
            }
        }
    }
}

#[derive(Clone)]
struct Inbox(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<nuvol_agent::InboundQuery>>>);

#[tokio::test]
async fn registered_queries_and_streams_are_answered_by_their_component() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(AgentBuilder::new().with::<Responder>(), d1.path(), &[])
        .await
        .unwrap();
    let b_flags = flags(d2.path(), &[]);
    let b_flags: Vec<&str> = b_flags
        .iter()
        .map(|s| {
            if s == "--node=sup" {
                "--node=asker"
            } else {
                s.as_str()
            }
        })
        .collect();
    let b = AgentBuilder::new()
        .configure_from("", &b_flags)
        .unwrap()
        .start()
        .await
        .unwrap();
    b.cluster()
        .join(&[a.cluster().bound().to_string()], false)
        .await
        .unwrap();
    let mut a_events = a.cluster().events();

    // A stream protocol: the payload starts with APP_STREAM and the id.
    let reply = b
        .cluster()
        .app_request(
            a.cluster().bound(),
            vec![nuvol_agent::APP_STREAM, 9, b'h', b'i'],
        )
        .await
        .unwrap();
    assert_eq!(
        reply,
        [
            nuvol_agent::APP_STREAM,
            9,
            b'h',
            b'i',
            b' ',
            b'b',
            b'a',
            b'c',
            b'k'
        ]
    );
    // One nobody registered: memberlist's error reply.
    let err = b
        .cluster()
        .app_request(a.cluster().bound(), vec![nuvol_agent::APP_STREAM, 10])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no handler for this stream protocol"),
        "{err}"
    );

    // An internal query: answered by the component, not seen as an event.
    let mut q = b
        .cluster()
        .query(
            "_nuvol_echo".into(),
            b"ping".to_vec(),
            nuvol_gossip::QueryParams {
                filter_nodes: vec!["sup".into()],
                timeout: Duration::from_secs(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut responses = BTreeMap::new();
    while let Some(u) = q.updates.recv().await {
        if let nuvol_agent::QueryUpdate::Response { from, payload } = u {
            responses.insert(from, payload);
        }
    }
    let done = q.done.await.unwrap();
    assert_eq!(done.dropped, 0);
    assert_eq!(
        responses.get("sup").map(Vec::as_slice),
        Some(&b"echo:ping"[..])
    );
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), a_events.recv()).await {
        assert!(
            !matches!(ev, nuvol_gossip::Event::Query { .. }),
            "an internal query reached the event stream: {ev:?}"
        );
    }
    b.shutdown(false).await;
    a.shutdown(false).await;
}

#[tokio::test]
async fn owned_tags_are_refused_to_users_and_kept_out_of_the_tags_file() {
    struct Owner;
    impl Component for Owner {
        type Config = NoSettings;
        const NAME: &'static str = "owner";
        fn build(_: NoSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
            let t = ctx.own_tags(&["svc"])?;
            ctx.provide(t);
            Ok(Some(Owner))
        }
        async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
            let t = ctx.registry().get::<nuvol_agent::OwnedTags>().unwrap();
            let cur = t.current().await?;
            t.replace(
                cur.version,
                BTreeMap::from([("svc".to_owned(), "1".to_owned())]),
            )
            .await?;
            // Only its own keys.
            let cur = t.current().await?;
            let e = t
                .replace(
                    cur.version,
                    BTreeMap::from([("role".to_owned(), "x".to_owned())]),
                )
                .await
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "the owner component does not own tag \"role\""
            );
            // A stale version changes nothing.
            let e = t
                .replace(cur.version - 1, BTreeMap::new())
                .await
                .unwrap_err();
            assert!(matches!(e, nuvol_agent::ClusterError::TagsChanged));
            ctx.ready();
            ctx.stopping().await;
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let tags_file = dir.path().join("tags.json");
    // A tags file from serf days that holds the owned key: ignored.
    std::fs::write(&tags_file, r#"{"svc": "old", "role": "web"}"#).unwrap();
    let tf = format!("--tags-file={}", tags_file.display());
    let agent = start(AgentBuilder::new().with::<Owner>(), dir.path(), &[&tf])
        .await
        .unwrap();
    let me = agent.cluster().local_member().await.unwrap();
    assert_eq!(me.tags.get("svc").map(String::as_str), Some("1"));
    assert_eq!(me.tags.get("role").map(String::as_str), Some("web"));
    let e = agent
        .cluster()
        .set_user_tags(BTreeMap::from([("svc".to_owned(), "x".to_owned())]), vec![])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tag \"svc\" belongs to the owner component, which sets it itself"
    );
    let e = agent
        .cluster()
        .set_user_tags(BTreeMap::new(), vec!["svc".into()])
        .await
        .unwrap_err();
    assert!(matches!(e, nuvol_agent::ClusterError::TagOwned { .. }));
    // A user tag is written to the file, without the owned one; the call
    // returns once it is on disk.
    agent
        .cluster()
        .set_user_tags(
            BTreeMap::from([("zone".to_owned(), "b".to_owned())]),
            vec![],
        )
        .await
        .unwrap();
    let saved: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&tags_file).unwrap()).unwrap();
    assert_eq!(
        saved,
        BTreeMap::from([
            ("role".to_owned(), "web".to_owned()),
            ("zone".to_owned(), "b".to_owned())
        ])
    );
    agent.shutdown(false).await;
}

/// Does its pre-leave work (while the cluster still answers) and records
/// it; `Slow` never answers its hook, `Gone` drops it.
struct Drainer;

impl Component for Drainer {
    type Config = NoSettings;
    const NAME: &'static str = "drainer";

    fn build(_: NoSettings, _ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        Ok(Some(Drainer))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let log = ctx.registry().get::<Log>().unwrap();
        let mut hook = ctx
            .cluster()
            .before_leave("drainer", Duration::from_secs(5));
        // A hook left behind by an earlier run: skipped.
        drop(ctx.cluster().before_leave("gone", Duration::from_secs(60)));
        let slow = ctx
            .cluster()
            .before_leave("slow", Duration::from_millis(300));
        ctx.ready();
        tokio::select! {
            done = hook.requested() => {
                let me = ctx.cluster().local_member().await.map(|m| m.status);
                tokio::time::sleep(Duration::from_millis(200)).await;
                log.push(format!("drained while {me:?}"));
                done.done();
            }
            () = ctx.stopping() => log.push("stopped without a leave"),
        }
        ctx.stopping().await;
        drop(slow);
        log.push("stop drainer");
        Ok(())
    }
}

#[tokio::test]
async fn leave_hooks_run_before_the_leave_and_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let agent = start(
        AgentBuilder::new().provide(log.clone()).with::<Drainer>(),
        dir.path(),
        &[],
    )
    .await
    .unwrap();
    let cluster = agent.cluster().clone();
    // The longest hook bounds the leave (the dropped one counts no more).
    assert_eq!(cluster.leave_hooks_budget(), Duration::from_secs(5));
    // The silent hook is cut at its 300 ms (unbounded, this would hang).
    cluster.leave().await.unwrap();
    // The drainer's work came first, while this node was still alive.
    assert_eq!(log.lines(), ["drained while Ok(Alive)"]);
    assert!(matches!(
        cluster.local_member().await.map(|m| m.status),
        Ok(nuvol_gossip::MemberStatus::Leaving | nuvol_gossip::MemberStatus::Left)
    ));
    agent.shutdown(false).await;
    assert_eq!(log.lines(), ["drained while Ok(Alive)", "stop drainer"]);
}
