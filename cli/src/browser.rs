//! Headless Chromium for the page's checks: the browser test and the
//! bench open a generated page with `#selftest` or `#bench`, and read the
//! JSON the page writes into its DOM (`--dump-dom`).

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Chromium on PATH, if any (Debian's `chromium`).
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

fn profile_dir() -> PathBuf {
    // A profile of its own per browser (tests run in parallel).
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("distzero-view-profile-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Run headless Chromium on `url`, returning the DOM it dumps. The
/// browser is killed if it outlives `limit` (no process is left behind).
pub fn dump_dom(browser: &str, url: &str, limit: Duration) -> String {
    let profile = profile_dir();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1400,900",
            "--virtual-time-budget=30000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {browser}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?} on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&profile);
    reader.join().unwrap()
}

/// The JSON the page wrote into `<pre id="…">`.
pub fn pre_json(dom: &str, id: &str) -> Value {
    let open = format!("<pre id=\"{id}\">");
    let Some(start) = dom.find(&open) else {
        panic!(
            "the page wrote no <pre id={id}> (did its script fail?); DOM starts: {}",
            &dom[..dom.len().min(600)]
        );
    };
    let rest = &dom[start + open.len()..];
    let text = &rest[..rest.find("</pre>").expect("</pre>")];
    let text = text
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("#{id} is not JSON ({e}): {text}"))
}
