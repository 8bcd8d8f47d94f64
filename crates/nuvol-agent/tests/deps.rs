//! Architecture Invariant: the core depends on no feature crate.

#[test]
fn the_core_depends_on_no_feature_crate() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "nuvol-agent",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--locked",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"nuvol-gossip"), "{text}");
    for feature in [
        "nuvol-catalog",
        "nuvol-api",
        "nuvol-dns",
        "nuvol-mdns",
        "nuvol-checks",
        "nuvol-example",
    ] {
        assert!(
            !names.contains(&feature),
            "nuvol-agent depends on {feature}:\n{text}"
        );
    }
}
