//! The API token file.

use nuvol_api::token::{load_or_create, read_token, token_path, TokenError};

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        read_token(dir.path()),
        Err(TokenError::Missing { .. })
    ));
    let t = load_or_create(dir.path()).unwrap();
    assert_eq!(t.len(), 64);
    assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    assert_eq!(mode(&token_path(dir.path())), 0o600);
    assert_eq!(load_or_create(dir.path()).unwrap(), t);
    assert_eq!(read_token(dir.path()).unwrap(), t);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(load_or_create(other.path()).unwrap(), t);
}

#[test]
fn a_user_token_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mine = "my-own-token-that-is-long-enough-0123456789";
    std::fs::write(token_path(dir.path()), format!("{mine}\n")).unwrap();
    assert_eq!(load_or_create(dir.path()).unwrap(), mine);
}

#[cfg(unix)]
#[test]
fn a_readable_token_file_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let t = load_or_create(dir.path()).unwrap();
    let p = token_path(dir.path());
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(load_or_create(dir.path()).unwrap(), t);
    assert_eq!(mode(&p), 0o600);
}

#[test]
fn a_corrupt_token_file_is_an_error_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = token_path(dir.path());
    for bad in [
        &b""[..],
        b"\n",
        b"short\n",
        b"with spaces in the middle of it, long enough",
        &[0xff; 64],
    ] {
        std::fs::write(&p, bad).unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TokenError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("api-token"), "{err}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            bad,
            "the file must not be replaced"
        );
        assert!(matches!(
            read_token(dir.path()),
            Err(TokenError::Corrupt { .. })
        ));
    }
}
