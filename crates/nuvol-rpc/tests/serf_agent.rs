//! nuvol-rpc's client against a real `serf agent` (Debian's package): every
//! command, auth, streams, queries, protocol errors.

use nuvol_rpc::frame::{encode_value, FrameDecoder};
use nuvol_rpc::proto::errors;
use nuvol_rpc::types::*;
use nuvol_rpc::*;
use nuvol_testkit::{require_serf as serf_available, wait_until_async, AgentBuilder, SerfAgent};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// A `serf agent` on a loopback address of its own (testkit's allocator).
fn serf(name: &str) -> AgentBuilder<SerfAgent> {
    SerfAgent::builder(name)
}

fn tags(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn client(a: &SerfAgent) -> RpcClient {
    RpcClient::connect(&a.rpc_addr().to_string(), None)
        .await
        .expect("connect to serf")
}

#[tokio::test]
async fn members_filters_stats_and_coordinates() {
    if !serf_available() {
        return;
    }
    let a = serf("m1")
        .tag("role", "web")
        .tag("dc", "bcn")
        .spawn()
        .expect("serf agent");
    let c = client(&a).await;

    let ms = c.members().await.unwrap();
    assert_eq!(ms.len(), 1);
    let m = &ms[0];
    assert_eq!(m.name, "m1");
    assert_eq!(m.addr, Some(a.bind().ip()));
    assert_eq!(m.port, 7946);
    assert_eq!(m.addr_string(), a.bind().to_string());
    assert_eq!(m.status, "alive");
    assert_eq!(m.tags, tags(&[("role", "web"), ("dc", "bcn")]));
    assert!(m.protocol_min <= m.protocol_cur && m.protocol_cur <= m.protocol_max);
    assert!(m.delegate_min <= m.delegate_cur && m.delegate_cur <= m.delegate_max);
    assert!(m.delegate_max >= 4);

    // Filters are anchored regular expressions.
    let hit = c
        .members_filtered(&tags(&[("role", "w.b")]), "alive", "m.")
        .await
        .unwrap();
    assert_eq!(hit.len(), 1);
    for (t, st, n) in [
        (tags(&[("role", "we")]), "", ""),
        (tags(&[("missing", ".+")]), "", ""),
        (BTreeMap::new(), "failed", ""),
        (BTreeMap::new(), "", "m"),
    ] {
        assert!(c.members_filtered(&t, st, n).await.unwrap().is_empty());
    }

    let stats = c.stats().await.unwrap();
    assert_eq!(stats.get("agent", "name"), Some("m1"));
    assert_eq!(stats.get("tags", "role"), Some("web"));
    assert_eq!(stats.get("serf", "members"), Some("1"));
    assert!(stats.0.contains_key("runtime"));

    let me = c
        .get_coordinate("m1")
        .await
        .unwrap()
        .expect("own coordinate");
    assert_eq!(me.vec.len(), 8);
    assert!(me.distance_to(&me).is_some());
    assert_eq!(c.get_coordinate("nobody").await.unwrap(), None);
}

#[tokio::test]
async fn tags_update_delete_and_agent_limit() {
    if !serf_available() {
        return;
    }
    let a = serf("tg1")
        .tag("old", "1")
        .tag("keep", "2")
        .spawn()
        .expect("serf agent");
    let c = client(&a).await;
    c.update_tags(&tags(&[("role", "db")]), &["old"])
        .await
        .unwrap();
    let ms = c.members().await.unwrap();
    assert_eq!(ms[0].tags, tags(&[("role", "db"), ("keep", "2")]));
    // Serf refuses tags that encode larger than 512 bytes; nothing changes.
    let big = "x".repeat(600);
    let e = c
        .update_tags(&tags(&[("big", &big)]), &[] as &[&str])
        .await
        .unwrap_err();
    match &e {
        ClientError::Remote(msg) => assert!(msg.contains("limit"), "{msg}"),
        other => panic!("expected the agent's error, got {other:?}"),
    }
    let ms = c.members().await.unwrap();
    assert_eq!(ms[0].tags, tags(&[("role", "db"), ("keep", "2")]));
}

#[tokio::test]
async fn user_event_reaches_event_stream() {
    if !serf_available() {
        return;
    }
    let a = serf("ev1").spawn().expect("serf agent");
    let c = client(&a).await;
    let mut s = c.stream("user:deploy").await.unwrap();
    // The same connection sends the event while the stream is open.
    c.user_event("other", b"ignored", false).await.unwrap();
    c.user_event("deploy", b"v2\x00\xff", true).await.unwrap();
    let ev = tokio::time::timeout(T, s.next())
        .await
        .expect("event in time")
        .unwrap()
        .expect("stream open");
    match ev {
        StreamEvent::User(u) => {
            assert_eq!(u.event, "user");
            assert_eq!(u.name, "deploy");
            assert_eq!(u.payload, b"v2\x00\xff");
            assert!(u.coalesce);
            assert!(u.ltime > 0);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Events over serf's size limit are the agent's error.
    let e = c
        .user_event("deploy", &[b'x'; 2000], false)
        .await
        .unwrap_err();
    match &e {
        ClientError::Remote(msg) => assert!(msg.contains("exceeds configured limit"), "{msg}"),
        other => panic!("expected the agent's size error, got {other:?}"),
    }
    // An invalid filter is refused.
    let e = c.stream("bogus-event").await.err();
    assert_eq!(e, Some(ClientError::Remote(errors::INVALID_FILTER.into())));
    // Stopping is acknowledged and the connection stays usable.
    s.stop().await.unwrap();
    assert_eq!(c.members().await.unwrap().len(), 1);
}

#[tokio::test]
async fn member_events_on_stream() {
    if !serf_available() {
        return;
    }
    let a = serf("me1").spawn().expect("serf agent");
    let mut b = serf("me2").spawn().expect("serf agent");
    let c = client(&a).await;
    let mut s = c.stream("member-join,member-failed").await.unwrap();
    assert_eq!(c.join(&[b.bind().to_string()], false).await.unwrap(), 1);
    let mut joined = false;
    let mut failed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(joined && failed) {
        let ev = tokio::time::timeout_at(deadline, s.next())
            .await
            .expect("member events in time")
            .unwrap()
            .expect("stream open");
        let StreamEvent::Member(m) = ev else {
            panic!("only member events expected, got {ev:?}");
        };
        let Some(me2) = m.members.iter().find(|x| x.name == "me2") else {
            continue;
        };
        if m.event == "member-join" {
            assert_eq!(me2.addr, Some(b.bind().ip()));
            assert_eq!(me2.status, "alive");
            joined = true;
            b.kill();
        }
        if m.event == "member-failed" {
            assert_eq!(me2.status, "failed");
            failed = true;
        }
    }
}

#[tokio::test]
async fn query_acked_by_the_agent_itself() {
    if !serf_available() {
        return;
    }
    let a = serf("q1").tag("role", "web").spawn().expect("serf agent");
    let c = client(&a).await;
    let started = std::time::Instant::now();
    let r = c
        .query(&QueryRequest {
            name: "ping".into(),
            payload: b"hello".to_vec(),
            request_ack: true,
            timeout: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(r.acks, vec!["q1"]);
    assert!(r.responses.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Filters that exclude the node: no ack.
    let r = c
        .query(&QueryRequest {
            name: "ping".into(),
            request_ack: true,
            filter_tags: tags(&[("role", "db")]),
            timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(r.acks.is_empty());
    let r = c
        .query(&QueryRequest {
            name: "ping".into(),
            request_ack: true,
            filter_nodes: vec!["q1".into()],
            relay_factor: 2,
            timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(r.acks, vec!["q1"]);
}

#[tokio::test]
async fn query_answered_through_stream_and_respond() {
    if !serf_available() {
        return;
    }
    let a = serf("qr1").spawn().expect("serf agent");
    let responder = client(&a).await;
    let asker = client(&a).await;
    let mut s = responder.stream("query:uptime").await.unwrap();
    // serf's agent answers the stream request before it registers the
    // stream (handleStream registers in a defer), so a query sent right
    // after the answer can miss it. Probe until a query shows on the stream.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let probe = asker
            .query(&QueryRequest {
                name: "uptime".into(),
                payload: b"probe".to_vec(),
                request_ack: false,
                timeout: Duration::from_millis(300),
                ..Default::default()
            })
            .await
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(1), s.next()).await;
        probe.collect().await.unwrap();
        match seen {
            Ok(ev) => match ev.unwrap().expect("stream open") {
                StreamEvent::Query(qe) if qe.payload == b"probe" => break,
                other => panic!("expected the probe query, got {other:?}"),
            },
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the query stream never got a query"
            ),
        }
    }
    let q = asker
        .query(&QueryRequest {
            name: "uptime".into(),
            payload: b"please".to_vec(),
            request_ack: false,
            timeout: Duration::from_secs(3),
            ..Default::default()
        })
        .await
        .unwrap();
    let ev = tokio::time::timeout(T, s.next())
        .await
        .expect("query event in time")
        .unwrap()
        .expect("stream open");
    let StreamEvent::Query(qe) = ev else {
        panic!("expected a query, got {ev:?}");
    };
    assert_eq!(qe.event, "query");
    assert_eq!(qe.name, "uptime");
    assert_eq!(qe.payload, b"please");
    responder.respond(qe.id, b"up 3 days").await.unwrap();
    // Unknown ids are refused.
    assert_eq!(
        responder.respond(qe.id + 100, b"x").await,
        Err(ClientError::Remote(errors::INVALID_QUERY_ID.into()))
    );
    let r = q.collect().await.unwrap();
    assert!(r.acks.is_empty());
    assert_eq!(
        r.responses,
        vec![NodeResponse {
            from: "qr1".into(),
            payload: b"up 3 days".to_vec()
        }]
    );
}

#[tokio::test]
async fn monitor_streams_logs() {
    if !serf_available() {
        return;
    }
    let a = serf("mon1").spawn().expect("serf agent");
    let c = client(&a).await;
    assert_eq!(
        c.monitor("NOPE").await.err(),
        Some(ClientError::Remote("Unknown log level: NOPE".into()))
    );
    let mut logs = c.monitor("debug").await.unwrap();
    assert_eq!(
        c.monitor("info").await.err(),
        Some(ClientError::Remote(errors::MONITOR_EXISTS.into()))
    );
    c.user_event("marker-event", b"", false).await.unwrap();
    let mut seen = false;
    let deadline = tokio::time::Instant::now() + T;
    while !seen {
        let line = tokio::time::timeout_at(deadline, logs.next())
            .await
            .expect("log line in time")
            .unwrap()
            .expect("stream open");
        assert!(line.contains('['), "{line}");
        seen = line.contains("marker-event");
    }
    logs.stop().await.unwrap();
    // A new monitor is allowed once the old one stopped.
    let again = c.monitor("info").await.unwrap();
    drop(again);
    assert_eq!(c.members().await.unwrap().len(), 1);
}

#[tokio::test]
async fn rpc_auth_key() {
    if !serf_available() {
        return;
    }
    let a = serf("auth1")
        .serf_config(serde_json::json!({"rpc_auth": "s3cret"}))
        .spawn()
        .expect("serf agent");
    // Handshake needs no key, commands do.
    let c = RpcClient::connect(&a.rpc_addr().to_string(), None)
        .await
        .unwrap();
    assert_eq!(
        c.members().await.unwrap_err(),
        ClientError::Auth(errors::AUTH_REQUIRED.into())
    );
    // The connection is still usable after serf's "Authentication required".
    assert_eq!(
        c.stats().await.unwrap_err(),
        ClientError::Auth(errors::AUTH_REQUIRED.into())
    );
    let e = RpcClient::connect(&a.rpc_addr().to_string(), Some("wrong"))
        .await
        .unwrap_err();
    assert_eq!(e, ClientError::Auth(errors::INVALID_AUTH_TOKEN.into()));
    let c = RpcClient::connect(&a.rpc_addr().to_string(), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(c.members().await.unwrap()[0].name, "auth1");
    let mut s = c.stream("user").await.unwrap();
    c.user_event("authed", b"", false).await.unwrap();
    let ev = tokio::time::timeout(T, s.next()).await.unwrap().unwrap();
    assert!(matches!(ev, Some(StreamEvent::User(ref u)) if u.name == "authed"));
}

#[tokio::test]
async fn keyring_commands() {
    if !serf_available() {
        return;
    }
    let k1 = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=";
    let k2 = "HvY8ubRZMgafUOWvrOadwOckVa1wN3QWAo46FVKbVN8=";
    let a = serf("key1").encrypt(k1).spawn().expect("serf agent");
    let c = client(&a).await;
    let l = c.list_keys().await.unwrap();
    assert_eq!(l.keys, BTreeMap::from([(k1.to_string(), 1)]));
    assert_eq!((l.num_nodes, l.num_resp, l.num_err), (1, 1, 0));
    let r = c.install_key(k2).await.unwrap();
    assert_eq!(r.num_err, 0);
    assert!(r.keys.is_empty());
    let l = c.list_keys().await.unwrap();
    assert_eq!(l.keys.len(), 2);
    c.use_key(k2).await.unwrap();
    // The primary key cannot be removed: the agent says why, per node.
    match c.remove_key(k2).await.unwrap_err() {
        ClientError::Keyring { error, response } => {
            assert!(error.contains("1/1 nodes"), "{error}");
            assert_eq!(response.num_err, 1);
            assert!(response.messages.contains_key("key1"), "{response:?}");
        }
        other => panic!("expected a keyring error, got {other:?}"),
    }
    c.remove_key(k1).await.unwrap();
    let l = c.list_keys().await.unwrap();
    assert_eq!(l.keys, BTreeMap::from([(k2.to_string(), 1)]));
    // Bad key material is the agent's error too.
    match c.install_key("not base64!").await {
        Err(ClientError::Keyring { error, response }) => {
            assert!(error.contains("illegal base64 data"), "{error}");
            assert_eq!(response.num_nodes, 0, "refused before asking any node");
        }
        other => panic!("expected serf's keyring error, got {other:?}"),
    }
}

#[tokio::test]
async fn keyring_on_unencrypted_agent_fails_per_node() {
    if !serf_available() {
        return;
    }
    let a = serf("nokey1").spawn().expect("serf agent");
    let c = client(&a).await;
    match c.list_keys().await.unwrap_err() {
        ClientError::Keyring { response, .. } => {
            assert!(response.messages["nokey1"].contains("Keyring is empty"));
        }
        other => panic!("expected a keyring error, got {other:?}"),
    }
}

#[tokio::test]
async fn join_force_leave_and_prune() {
    if !serf_available() {
        return;
    }
    let a = serf("fl1").spawn().expect("serf agent");
    let mut b = serf("fl2").spawn().expect("serf agent");
    let mut z = serf("fl3").spawn().expect("serf agent");
    let c = client(&a).await;
    // Nothing listens at this address: the join fails.
    let dead = z.bind().to_string();
    z.kill();
    match c.join(std::slice::from_ref(&dead), false).await {
        Err(ClientError::Remote(msg)) => {
            assert!(
                msg.contains(&dead) && msg.contains("connection refused"),
                "{msg}"
            )
        }
        other => panic!("expected serf's join error, got {other:?}"),
    }
    assert_eq!(c.join(&[b.bind().to_string()], true).await.unwrap(), 1);
    // A failed `members` call fails the test: it never reads as "absent".
    let status = |name: &'static str| {
        let c = c.clone();
        async move {
            c.members()
                .await
                .unwrap_or_else(|e| panic!("members: {e}"))
                .into_iter()
                .find(|m| m.name == name)
                .map(|m| m.status)
        }
    };
    wait_until_async("both alive", T, POLL, || async {
        status("fl2").await.as_deref() == Some("alive")
    })
    .await
    .unwrap();
    b.kill();
    wait_until_async("fl2 failed", Duration::from_secs(60), POLL, || async {
        status("fl2").await.as_deref() == Some("failed")
    })
    .await
    .unwrap();
    c.force_leave("fl2", false).await.unwrap();
    wait_until_async("fl2 left", T, POLL, || async {
        status("fl2").await.as_deref() == Some("left")
    })
    .await
    .unwrap();
    c.force_leave("fl2", true).await.unwrap();
    wait_until_async("fl2 pruned", T, POLL, || async {
        status("fl2").await.is_none()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn leave_shuts_the_agent_down() {
    if !serf_available() {
        return;
    }
    let mut a = serf("lv1").spawn().expect("serf agent");
    let c = client(&a).await;
    c.leave().await.unwrap();
    let st = a.wait_exit(T).expect("serf exits after leave");
    assert!(st.success(), "serf after leave: {st}");
    // The connection went with the agent.
    assert_eq!(c.members().await.unwrap_err(), ClientError::Closed);
}

/// Raw protocol, without the client: serf's own error replies, and serf's
/// bytes through this crate's framing.
#[tokio::test]
async fn raw_protocol_errors() {
    if !serf_available() {
        return;
    }
    let a = serf("raw1").spawn().expect("serf agent");

    async fn send(s: &mut tokio::net::TcpStream, cmd: &str, seq: u64, body: Option<rmpv::Value>) {
        let mut b = encode_value(
            &RequestHeader {
                command: cmd.into(),
                seq,
            }
            .to_value(),
        );
        if let Some(v) = body {
            b.extend(encode_value(&v));
        }
        s.write_all(&b).await.unwrap();
    }
    async fn recv(s: &mut tokio::net::TcpStream, d: &mut FrameDecoder) -> Option<rmpv::Value> {
        loop {
            if let Some(v) = d.decode().unwrap() {
                return Some(v);
            }
            let mut buf = [0u8; 100];
            let n = tokio::time::timeout(T, s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                return None;
            }
            d.feed(&buf[..n]);
        }
    }

    // A command before the handshake: refused and disconnected.
    let mut s = tokio::net::TcpStream::connect(a.rpc_addr()).await.unwrap();
    let mut d = FrameDecoder::new(1 << 20);
    send(&mut s, "members", 1, None).await;
    let h = ResponseHeader::from_value(&recv(&mut s, &mut d).await.unwrap()).unwrap();
    assert_eq!(h.error, errors::HANDSHAKE_REQUIRED);
    assert_eq!(recv(&mut s, &mut d).await, None);

    // Wrong version, then right, then twice; then an unknown command.
    let mut s = tokio::net::TcpStream::connect(a.rpc_addr()).await.unwrap();
    let mut d = FrameDecoder::new(1 << 20);
    let hs = |v| Some(HandshakeRequest { version: v }.to_value());
    send(&mut s, "handshake", 1, hs(2)).await;
    let h = ResponseHeader::from_value(&recv(&mut s, &mut d).await.unwrap()).unwrap();
    assert_eq!(
        (h.seq, h.error.as_str()),
        (1, errors::UNSUPPORTED_IPC_VERSION)
    );
    send(&mut s, "handshake", 2, hs(1)).await;
    let h = ResponseHeader::from_value(&recv(&mut s, &mut d).await.unwrap()).unwrap();
    assert_eq!((h.seq, h.error.as_str()), (2, ""));
    send(&mut s, "handshake", 3, hs(1)).await;
    let h = ResponseHeader::from_value(&recv(&mut s, &mut d).await.unwrap()).unwrap();
    assert_eq!(h.error, errors::DUPLICATE_HANDSHAKE);
    // Members: header then a typed body; serf sends an IPv4 address as 4
    // bytes, which is what `Member::to_value` writes too.
    send(&mut s, "members", 4, None).await;
    let hv = recv(&mut s, &mut d).await.unwrap();
    let h = ResponseHeader::from_value(&hv).unwrap();
    assert_eq!((h.seq, h.error.as_str()), (4, ""));
    assert_eq!(h.to_value(), hv, "header re-encodes to serf's field order");
    let body = recv(&mut s, &mut d).await.unwrap();
    let Some(rmpv::Value::Array(list)) = nuvol_rpc::value::get(&body, "Members") else {
        panic!("no Members in {body}");
    };
    assert_eq!(nuvol_rpc::value::get_bytes(&list[0], "Addr").len(), 4);
    let ours = MembersResponse::from_value(&body).unwrap();
    assert_eq!(ours.to_value(), body, "re-encoding gives serf's bytes back");
    let ms = MembersResponse::from_value(&body).unwrap();
    assert_eq!(ms.members[0].addr, Some(a.bind().ip()));
    send(&mut s, "no-such-command", 5, None).await;
    let h = ResponseHeader::from_value(&recv(&mut s, &mut d).await.unwrap()).unwrap();
    assert_eq!(h.error, errors::UNSUPPORTED_COMMAND);
    assert_eq!(recv(&mut s, &mut d).await, None);
}

#[tokio::test]
async fn unreachable_agent_is_a_clear_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let e = RpcClient::connect(&addr, None).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("Error connecting to the agent at {addr}: connection refused")
    );
}
