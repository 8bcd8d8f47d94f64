//! The skip-or-fail rule when chromedriver is missing. Alone in its binary:
//! it changes the process's environment.

use nuvol_testkit::browser::{browser, CHROMEDRIVER_ENV};
use nuvol_testkit::netns::REQUIRE_SYSTEM_ENV;

#[test]
fn missing_chromedriver_skips_or_fails() {
    std::env::set_var(CHROMEDRIVER_ENV, "/nonexistent/chromedriver");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    std::env::remove_var(REQUIRE_SYSTEM_ENV);
    let b = rt.block_on(browser("browser_missing")).unwrap();
    assert!(b.is_none(), "no chromedriver, yet a browser");

    std::env::set_var(REQUIRE_SYSTEM_ENV, "1");
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the panic is expected
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = rt.block_on(browser("browser_missing"));
    }))
    .expect_err("NUVOL_REQUIRE_SYSTEM=1 must turn the skip into a failure");
    std::panic::set_hook(hook);
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("NUVOL_CHROMEDRIVER=/nonexistent/chromedriver is not an executable file")
            && msg.contains("NUVOL_REQUIRE_SYSTEM=1"),
        "{msg}"
    );
}
