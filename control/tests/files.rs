//! The files API: workspace-relative reads and writes, and every way out of
//! the workspace refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::Control;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn write_read_list_append_and_delete_files() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let files = format!("/v1/sandboxes/{id}/files");

    let w = c
        .put(
            &files,
            json!({"path": "app/index.html", "content": "<h1>hi</h1>"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::OK, "{w:?}");
    assert_eq!(w.body["size"], 11);
    let w = c
        .put(
            &files,
            json!({"path": "app/index.html", "content": "\n", "append": true}),
        )
        .await;
    assert_eq!(w.body["size"], 12);

    let r = c.get(&format!("{files}?path=app/index.html")).await;
    assert_eq!(r.body["type"], "file");
    assert_eq!(r.body["content"], "<h1>hi</h1>\n");
    assert_eq!(r.body["encoding"], "utf8");

    // The sandbox user owns what the API wrote and can change it.
    assert_eq!(c.sh(&id, "cat app/index.html").await, "<h1>hi</h1>\n");
    c.sh(
        &id,
        "echo more >> app/index.html && touch app/new && mkdir app/sub",
    )
    .await;
    let uid = c.get(&format!("/v1/sandboxes/{id}")).await.body["uid"].clone();
    assert_eq!(
        c.sh(&id, "stat -c %u app app/index.html").await,
        format!("{uid}\n{uid}\n")
    );

    let list = c.get(&format!("{files}?path=app")).await;
    assert_eq!(list.body["type"], "dir");
    let names: Vec<&str> = list.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["index.html", "new", "sub"]);
    let root = c.get(&files).await;
    assert_eq!(root.body["entries"][0]["name"], "app");
    assert_eq!(root.body["entries"][0]["type"], "dir");

    // Binary content round-trips through base64, and raw reads give bytes.
    let bytes = [0u8, 159, 146, 150, 255];
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let w = c
        .put(
            &files,
            json!({"path": "bin.dat", "content": b64, "encoding": "base64"}),
        )
        .await;
    assert_eq!(w.body["size"], 5);
    let r = c.get(&format!("{files}?path=bin.dat")).await;
    assert_eq!(r.body["encoding"], "base64");
    assert_eq!(r.body["content"], b64);
    let raw = reqwest::get(format!("{}{files}?path=bin.dat&raw=true", c.base))
        .await
        .unwrap();
    assert_eq!(raw.bytes().await.unwrap().as_ref(), bytes);

    let d = c.delete(&format!("{files}?path=app")).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    let gone = c.get(&format!("{files}?path=app/index.html")).await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn paths_that_escape_the_workspace_are_refused() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let files = format!("/v1/sandboxes/{id}/files");
    // Links made from inside the sandbox, pointing out.
    c.sh(
        &id,
        "ln -s /etc etc-link; ln -s ../.. up; ln -s /home/user/.profile abs-in-home",
    )
    .await;
    let secret = c.data_dir.join("berth.db");
    assert!(secret.exists());

    for path in [
        "../x",
        "../../berth.db",
        "/etc/passwd",
        "a/../../x",
        "etc-link/passwd",
        "up/berth.db",
        "up",
        "abs-in-home",
    ] {
        let r = c.get(&format!("{files}?path={path}")).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "read {path}: {r:?}"
        );
        let w = c
            .put(&files, json!({"path": path, "content": "pwned"}))
            .await;
        assert_eq!(
            (w.status, w.code()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "write {path}: {w:?}"
        );
    }
    for path in ["../x", "/etc/passwd", "etc-link/passwd", "up/berth.db"] {
        let d = c.delete(&format!("{files}?path={path}")).await;
        assert_eq!(d.status, StatusCode::BAD_REQUEST, "delete {path}: {d:?}");
    }
    // Writing through a link into a new directory is refused as well.
    let w = c
        .put(&files, json!({"path": "up/new-dir/file", "content": "x"}))
        .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    assert!(!c.data_dir.join("sandboxes/new-dir").exists());
    assert!(!c.data_dir.join("new-dir").exists());
    // Deleting a link removes the link, never what it points to.
    let d = c.delete(&format!("{files}?path=up")).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert!(secret.exists());
    assert!(c.home(&id).join("workspace").exists());
}

#[tokio::test]
async fn files_of_unknown_sandboxes_and_oversized_bodies_are_refused() {
    let c = Control::start(&[("BERTH_MAX_FILE_SIZE", "1k")]).await;
    let r = c.get("/v1/sandboxes/nope/files?path=x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let files = format!("/v1/sandboxes/{id}/files");
    let big = "x".repeat(2000);
    let w = c.put(&files, json!({"path": "big", "content": big})).await;
    assert_eq!(
        (w.status, w.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        "{w:?}"
    );
    c.sh(&id, "head -c 5000 /dev/zero > big").await;
    let r = c.get(&format!("{files}?path=big")).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = c.put(&files, json!({"path": "", "content": "x"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .put(
            &files,
            json!({"path": "x", "content": "!!", "encoding": "base64"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fifos_loops_and_long_names_are_refused_at_once() {
    let c = Control::start(&[]).await;
    let id = c.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.sh(
        &id,
        "cd ~/workspace && mkfifo fifo2 && ln -s loop-a loop-b && ln -s loop-b loop-a",
    )
    .await;
    let files = format!("/v1/sandboxes/{id}/files");
    // Each answers 400 at once (the client's own timeout is 120 s).
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let r = c.get(&format!("{files}?path=fifo2")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert_eq!(r.code(), "invalid_path");
        let w = c
            .put(&files, json!({"path": "fifo2", "content": "x"}))
            .await;
        assert_eq!(w.status, StatusCode::BAD_REQUEST, "{w:?}");
    }
    // With a reader on the FIFO, a write still does not go into it.
    let reader = c.exec(
        &id,
        &[
            "/bin/sh",
            "-c",
            "timeout 5 cat ~/workspace/fifo2 >/dev/null & sleep 0.3; echo started",
        ],
    );
    let (_, w) = tokio::join!(reader, async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        c.put(&files, json!({"path": "fifo2", "content": "x"}))
            .await
    });
    assert_eq!(w.status, StatusCode::BAD_REQUEST, "{w:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    for path in ["loop-a", "loop-a/x"] {
        let r = c.get(&format!("{files}?path={path}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {r:?}");
        assert_eq!(r.code(), "invalid_path");
    }
    let long = "n".repeat(300);
    let r = c.get(&format!("{files}?path={long}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.code(), "invalid_path");
    let w = c.put(&files, json!({"path": long, "content": "x"})).await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST, "{w:?}");
    // The control answers everything else as before.
    assert_eq!(
        c.get(&format!("{files}?path=")).await.status,
        StatusCode::OK
    );
}
