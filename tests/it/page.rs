//! The report page in a real browser: `run` and `status` against moto write `<run-id>.html`,
//! headless Chromium renders it, and the test checks what a person would see (the funnel's
//! counts, a Japanese name, a hostile cell shown as text and nothing injected). A screenshot of
//! each page is kept under `target/page-test/` for a person to look at.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cognito_onboard::error::exit;

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A free-form pool's cohort: a Japanese username, a username that is markup, a provider who
/// will confirm, and an invalid row whose cell is markup (it has spaces, so it is no username).
const COHORT: &str = "username,email,name
山田太郎,taro.yamada@example.com,山田 太郎
<script>alert(1)</script>,script@example.com,Script Kiddie
hanako,hanako.suzuki@example.com,鈴木 花子
\"\"\"><img src=x onerror=alert(1)>\",img@example.com,Image Tag
";

/// Where the screenshots go: `<target>/page-test/` (the test binary is `<target>/debug/deps/it-*`).
fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target"));
    let dir = target.join("page-test");
    std::fs::create_dir_all(&dir).expect("create target/page-test");
    dir
}

/// Runs headless Chromium with `args` on `page` in a process group of its own, with a time
/// limit; returns its stdout. Whatever happens, no process of the group is left at the end.
fn chromium(page: &Path, args: &[&str], profile: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make test`, which installs it (scripts/chromium.sh)"
    );
    let out = tempfile::NamedTempFile::new().expect("a file for Chromium's output");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let group = child.id() as libc::pid_t;
    let kill_group = || unsafe {
        libc::kill(-group, libc::SIGKILL);
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            kill_group();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Its helpers (zygote, renderer) leave with it; make sure of it.
    let gone = Instant::now() + Duration::from_secs(10);
    while unsafe { libc::kill(-group, 0) } == 0 && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    if unsafe { libc::kill(-group, 0) } == 0 {
        kill_group();
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_ne!(
        unsafe { libc::kill(-group, 0) },
        0,
        "a chromium process outlived the test"
    );
    assert!(
        status.success(),
        "chromium failed on {}: {status}",
        page.display()
    );
    std::fs::read_to_string(out.path()).expect("chromium's output")
}

/// The page as the browser built it (`--dump-dom`), and a screenshot of it at `png`.
fn render(page: &Path, png: &Path) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let dom = chromium(page, &["--dump-dom"], profile.path());
    let _ = std::fs::remove_file(png);
    chromium(
        page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            "--virtual-time-budget=2000",
        ],
        profile.path(),
    );
    let size = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no screenshot at {}", png.display());
    eprintln!(
        "screenshot of {}: {} ({size} bytes)",
        page.display(),
        png.display()
    );
    dom
}

/// The text of the SVG `<text>` element with `id`, in the dumped DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id} in the page:\n{dom}"));
    let rest = &dom[start..];
    let open = rest.find('>').expect("the element's end") + 1;
    let close = rest.find("</").expect("the element's closing tag");
    &rest[open..close]
}

/// What a person would see of the hostile cells: their text, and no element they could inject.
fn hostile_cells_are_text(dom: &str) {
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the markup username is shown as text:\n{dom}"
    );
    assert!(
        dom.contains("\"&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "the markup cell is shown as text:\n{dom}"
    );
    assert!(!dom.contains("<script"), "a script element:\n{dom}");
    assert!(!dom.contains("<img"), "an injected image:\n{dom}");
    assert!(
        !dom.contains("onerror=alert(1)>"),
        "an injected handler:\n{dom}"
    );
}

fn page_of(run: &Run) -> PathBuf {
    let json = run
        .stdout()
        .lines()
        .rev()
        .find(|l| l.ends_with(".json"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no report path on stdout\n{}", run.stdout()));
    let html = json.with_extension("html");
    assert!(html.exists(), "no page next to {}", json.display());
    html
}

#[test]
fn the_report_pages_of_run_and_status_render_in_a_browser() {
    let started = Instant::now();
    let env = TestEnv::new();
    let pool = env.pool(false, &[]);
    let csv = env.write("cohort.csv", COHORT);
    let passwords_file = env.path("passwords.csv");
    let run = env
        .command(&pool, ["run"])
        .arg(&csv)
        .args(["--delivery", "suppress", "--password-file"])
        .arg(&passwords_file)
        .expect(exit::ROWS_FAILED);
    let report = run.report();
    assert_eq!(report["summary"]["created"], 3, "{report:#}");
    assert_eq!(report["summary"]["invalid"], 1, "{report:#}");
    let run_page = page_of(&run);
    assert!(
        run.stderr().contains(&format!("{}", run_page.display())),
        "the log names the page:\n{}",
        run.stderr()
    );

    let out = output_dir();
    let dom = render(&run_page, &out.join("run.png"));
    assert_eq!(text_of(&dom, "funnel-invited"), "3");
    assert_eq!(text_of(&dom, "funnel-pending"), "3");
    assert_eq!(text_of(&dom, "funnel-confirmed"), "0");
    assert!(
        dom.contains("<td>山田太郎</td>"),
        "a row with a Japanese username:\n{dom}"
    );
    assert!(
        dom.contains("<td>山田 太郎</td>"),
        "a row with the provider's Japanese name:\n{dom}"
    );
    assert!(dom.contains("rows carry no confirmation times"), "{dom}");
    hostile_cells_are_text(&dom);
    let html = std::fs::read_to_string(&run_page).unwrap();
    for (_, password) in passwords(&passwords_file) {
        assert!(!html.contains(&password), "a password in the page");
    }

    let temporary = passwords(&passwords_file)
        .into_iter()
        .find(|(user, _)| user == "hanako")
        .expect("hanako's temporary password")
        .1;
    env.complete_first_sign_in(&pool, "hanako", &temporary, "Confirmed-Passw0rd!");
    let status = env.command(&pool, ["status"]).expect(exit::OK);
    let status_page = page_of(&status);
    let dom = render(&status_page, &out.join("status.png"));
    assert_eq!(text_of(&dom, "funnel-invited"), "3");
    assert_eq!(text_of(&dom, "funnel-confirmed"), "1");
    assert_eq!(text_of(&dom, "funnel-pending"), "2");
    assert_eq!(text_of(&dom, "hist-0"), "1", "confirmed within a day");
    let newly = &dom[dom
        .find("id=\"newly-confirmed\"")
        .expect("the newly confirmed")..];
    let newly = &newly[..newly.find("</section>").unwrap()];
    assert!(newly.contains("<td>hanako</td>"), "{newly}");
    assert!(dom.contains("<td>山田太郎</td>"), "{dom}");
    assert!(
        dom.contains("<td>山田 太郎</td>"),
        "the name Cognito holds:\n{dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<script") && !dom.contains("<img"), "{dom}");
    eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}
