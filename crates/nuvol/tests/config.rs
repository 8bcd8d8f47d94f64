//! The sectioned configuration of the binary's components: the example
//! file documents and parses, and bad settings are one line naming the
//! setting, a non-zero exit, and nothing written.

use std::process::Command;

const NUVOL: &str = env!("CARGO_BIN_EXE_nuvol");
const EXAMPLE: &str = include_str!("../../../nuvol.example.toml");

#[test]
fn the_example_file_parses_and_documents_every_key() {
    let cfg = nuvol::components()
        .configure_from(EXAMPLE, &[])
        .unwrap_or_else(|e| panic!("nuvol.example.toml: {e}"));
    assert_eq!(cfg.gossip.protocol, 5);
    let mut missing = Vec::new();
    for (section, keys) in nuvol::components().sections() {
        let header = format!("[{section}]");
        let Some(start) = EXAMPLE.find(&header) else {
            missing.push(header);
            continue;
        };
        // The section's text: up to the next top-level table.
        let body = &EXAMPLE[start + header.len()..];
        let end = body
            .match_indices("\n[")
            .find(|(i, _)| !body[i + 2..].starts_with(&format!("{section}.")))
            .map_or(body.len(), |(i, _)| i);
        let body = &body[..end];
        for k in keys {
            let documented = body.lines().any(|l| {
                let l = l.trim_start_matches('#').trim();
                l.starts_with(&format!("{} =", k.name)) || l == format!("[{section}.{}]", k.name)
            });
            if !documented {
                missing.push(format!("{section}.{}", k.name));
            }
        }
    }
    assert!(missing.is_empty(), "not in nuvol.example.toml: {missing:?}");
}

fn agent(args: &[&str]) -> (i32, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(NUVOL)
        .arg("agent")
        .arg(format!("--data-dir={}", data.display()))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    )
}

#[test]
fn bad_settings_are_one_line_a_non_zero_exit_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::cell::Cell::new(0);
    let file = |text: &str| {
        n.set(n.get() + 1);
        let p = dir.path().join(format!("c{}.toml", n.get()));
        std::fs::write(&p, text).unwrap();
        format!("--config={}", p.display())
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![file("[gossip]\nnode_name = 'a'\n")],
            "gossip.node_name: unknown key",
        ),
        (vec![file("[gosip]\n")], "unknown section [gosip]"),
        (
            vec![file("node_name = 'a'\n")],
            "node_name: settings belong in a section; it is now [gossip] node",
        ),
        (
            vec![file("[gossip]\nprotocol = 'five'\n")],
            "invalid gossip.protocol (--protocol): expected an integer, found a string",
        ),
        (
            vec![file("[gossip]\nprotocol = 9\n")],
            "invalid gossip.protocol (--protocol): 9 is not supported (2 to 5)",
        ),
        (
            vec![file("[catalog]\nremove_after = 'soon'\n")],
            "invalid catalog.remove_after (--catalog-remove-after): invalid duration",
        ),
        (
            vec![file("[dns]\ndomain = 'a..b'\n")],
            "invalid dns.domain (--domain)",
        ),
        (vec![file("[rpc\n")], "line 1"),
        (
            vec!["--profile=fast".into()],
            "invalid gossip.profile (--profile): unknown profile \"fast\"",
        ),
        (
            vec!["--encrypt=nope".into()],
            "invalid gossip.encrypt (--encrypt)",
        ),
        (
            vec!["--tag=novalue".into()],
            "invalid gossip.tags (--tag): invalid tag \"novalue\": expected KEY=VALUE",
        ),
        (
            vec!["--retry-interval=5".into()],
            "invalid join.retry_interval (--retry-interval): missing unit",
        ),
        (
            vec!["--event-handler=bogus=x".into()],
            "invalid handlers.event_handler (--event-handler)",
        ),
        (
            vec!["--cloud=two words".into()],
            "invalid catalog.cloud (--cloud)",
        ),
        (
            vec!["--log-level=loud".into()],
            "invalid agent.log_level (--log-level)",
        ),
        (
            vec!["--no-such-flag".into()],
            "unexpected argument '--no-such-flag'",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr, tmp) = agent(&args);
        assert_ne!(code, 0, "{args:?} must fail");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line, got {stderr:?}");
        assert!(
            lines[0].contains(want),
            "{args:?}: {stderr:?} lacks {want:?}"
        );
        assert!(
            !tmp.path().join("data").exists(),
            "{args:?}: the data dir was created"
        );
    }
}
