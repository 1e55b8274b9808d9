//! The studio page in a real headless Chromium, driven through chromedriver (WebDriver) with
//! fantoccini: add an object and a relationship and see the image change, drag a box and see
//! the next request carry `"boxes"`, unpin it, see an unknown word reported next to its field,
//! load the paper's example file. Saves a screenshot (`SG2IM_SCREENSHOT=docs/serve.png` to
//! refresh the README's).
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; without them the test fails and
//! says how to install them.

mod serve_support;

use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use serve_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get update && apt-get install -y chromium chromium-driver";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/lib/chromium")]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// chromedriver on a free port of 127.0.0.1; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(program: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (install: {INSTALL})",
                    program.display()
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while get_status(&format!("{url}/status")) != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not come up on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, url }
    }
}

fn get_status(url: &str) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(url).call().ok().map(|r| r.status().as_u16())
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Evaluates `expr` in the page until it is truthy; returns its value.
async fn wait_for(c: &Client, what: &str, expr: &str) -> Value {
    let start = Instant::now();
    let script = format!("try {{ return ({expr}); }} catch (e) {{ return null; }}");
    loop {
        let v = c.execute(&script, vec![]).await.unwrap();
        let truthy =
            !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
        if truthy {
            return v;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let errors = c
                .execute(
                    "return [...document.querySelectorAll('.error')].map(e => e.id + ': ' + e.textContent).join(' | ')",
                    vec![],
                )
                .await
                .unwrap();
            panic!("timed out waiting for {what} ({expr}); errors shown: {errors}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every request answered, nothing scheduled.
const IDLE: &str = "window.sg2im.responses === window.sg2im.requests && !window.sg2im.state.inFlight && !window.sg2im.state.pending && !window.sg2im.state.scheduled";

async fn js(c: &Client, expr: &str) -> Value {
    c.execute(&format!("return ({expr});"), vec![])
        .await
        .unwrap()
}

async fn drag(c: &Client, css: &str, dx: f64, dy: f64) {
    let el = c.find(Locator::Css(css)).await.unwrap();
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: el,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(150)),
            x: dx / 2.0,
            y: dy / 2.0,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(150)),
            x: dx / 2.0,
            y: dy / 2.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    c.perform_actions(mouse).await.unwrap();
    c.release_actions().await.unwrap();
}

#[test]
fn studio_in_headless_chromium() {
    let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver not found: the browser test needs Chromium and its WebDriver: {INSTALL}"
        )
    });
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
        .unwrap_or_else(|| panic!("chromium not found: the browser test needs it: {INSTALL}"));
    let server = TestServer::start(ref_small_pt(), |_| {});
    let driver = Driver::start(&chromedriver);
    // chromedriver wants a canonical path for a file input.
    let example = shared("reference/data/scene_graphs/figure_6_sheep.json")
        .canonicalize()
        .expect("the example scene graphs beside the checkout");
    let screenshot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,900", "--hide-scrollbars"],
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a chromedriver session");
        c.goto(&server.url("/")).await.unwrap();

        // The starting graph (sky, grass, sheep) is drawn.
        wait_for(&c, "the first image", &format!("{IDLE} && document.getElementById('image').src.startsWith('data:image/png')")).await;
        assert_eq!(js(&c, "window.sg2im.lastRequest.objects").await, json!(["sky", "grass", "sheep"]));
        assert_eq!(js(&c, "document.querySelectorAll('#overlay .box').length").await, json!(3));
        assert_eq!(js(&c, "document.querySelectorAll('#graph .obj').length").await, json!(3));
        let src0 = js(&c, "document.getElementById('image').src").await;

        // Add an object and a relationship: the image changes.
        c.find(Locator::Id("new-object")).await.unwrap().send_keys("tree").await.unwrap();
        c.find(Locator::Id("add-object")).await.unwrap().click().await.unwrap();
        c.find(Locator::Id("add-relationship")).await.unwrap().click().await.unwrap();
        c.find(Locator::Id("rel-predicate-2")).await.unwrap().select_by_value("behind").await.unwrap();
        wait_for(
            &c,
            "the image of the edited graph",
            &format!("{IDLE} && window.sg2im.lastRequest.relationships.length === 3 && window.sg2im.lastRequest.relationships[2][1] === 'behind'"),
        )
        .await;
        let req = js(&c, "window.sg2im.lastRequest").await;
        assert_eq!(req["objects"], json!(["sky", "grass", "sheep", "tree"]));
        assert_eq!(req["relationships"][2], json!([3, "behind", 0]));
        assert!(req.get("boxes").is_none(), "nothing pinned yet: {req}");
        let src1 = js(&c, "document.getElementById('image').src").await;
        assert_ne!(src0, src1, "the image did not change after the edit");
        assert_eq!(js(&c, "document.querySelectorAll('#graph .pred').length").await, json!(3));

        // Drag the top-most box: it is pinned and the request carries boxes for every object.
        let before = js(&c, "window.sg2im.state.objects[3].pred").await;
        drag(&c, "#box-3", 40.0, 30.0).await;
        wait_for(&c, "a request with boxes", &format!("{IDLE} && window.sg2im.lastRequest.boxes")).await;
        let req = js(&c, "window.sg2im.lastRequest").await;
        let boxes = req["boxes"].as_array().unwrap();
        assert_eq!(boxes.len(), 4, "{req}");
        let pinned = js(&c, "window.sg2im.state.objects[3].pinned").await;
        assert_eq!(boxes[3], pinned);
        assert_ne!(pinned, before, "the box did not move");
        // Moved right and down, by about 40 and 30 pixels of the drawn image.
        let (b0, p0) = (before[0].as_f64().unwrap(), pinned[0].as_f64().unwrap());
        assert!(p0 > b0 || p0 >= 0.99 - (pinned[2].as_f64().unwrap() - p0), "{before} -> {pinned}");
        // Unpinned objects were sent with their predicted boxes.
        assert_eq!(boxes[0], js(&c, "window.sg2im.state.objects[0].pred").await);
        c.find(Locator::Id("unpin-3")).await.unwrap().click().await.unwrap();
        wait_for(&c, "a request without boxes", &format!("{IDLE} && !window.sg2im.lastRequest.boxes")).await;

        // An unknown word: the server's message next to that object's field; the page stays.
        let field = c.find(Locator::Id("obj-name-0")).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys("skyy").await.unwrap();
        let err = wait_for(&c, "the unknown-word error", "document.getElementById('obj-err-0').textContent").await;
        let err = err.as_str().unwrap();
        assert!(err.contains("\"skyy\" is not in the model's vocabulary") && err.contains("closest: \"sky\""), "{err}");
        assert!(js(&c, "document.getElementById('obj-name-0').classList.contains('invalid')").await == json!(true));
        assert!(js(&c, "document.getElementById('image').src.startsWith('data:image/png')").await == json!(true));
        let field = c.find(Locator::Id("obj-name-0")).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys("sky").await.unwrap();
        wait_for(&c, "the error cleared", &format!("{IDLE} && document.getElementById('obj-err-0').textContent === '' && window.sg2im.lastRequest.objects[0] === 'sky'")).await;

        // Load the paper's example file (a list of 7 graphs): the first graph is loaded.
        c.find(Locator::Id("load-json"))
            .await
            .unwrap()
            .send_keys(example.to_str().unwrap())
            .await
            .unwrap();
        let msg = wait_for(&c, "the file loaded", "document.getElementById('file-message').textContent").await;
        assert!(msg.as_str().unwrap().contains("scene graph 1 of 7"), "{msg}");
        wait_for(&c, "the example's image", &format!("{IDLE} && window.sg2im.lastRequest.objects.join() === 'sky,grass,zebra'")).await;
        assert_eq!(js(&c, "window.sg2im.lastRequest.relationships").await, json!([[0, "above", 1], [2, "standing on", 1]]));
        assert_eq!(js(&c, "document.querySelectorAll('#overlay .box').length").await, json!(3));

        // A pinned box for the picture, then the screenshot.
        drag(&c, "#box-2", -30.0, 20.0).await;
        wait_for(&c, "the pinned example", &format!("{IDLE} && window.sg2im.lastRequest.boxes")).await;
        c.execute("document.activeElement.blur()", vec![]).await.unwrap();
        let png = c.screenshot().await.unwrap();
        let (w, h, _) = decode_png(&png);
        assert!(w > 600 && h > 400, "{w}x{h}");
        std::fs::write(screenshot_dir.join("serve.png"), &png).unwrap();
        if let Some(path) = std::env::var_os("SG2IM_SCREENSHOT") {
            std::fs::write(path, &png).unwrap();
        }
        c.close().await.unwrap();
    });
}
