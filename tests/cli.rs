//! The CLI scenario of the core issue, each command a separate process on one store file.

mod common;
use common::{fails, lstore, ok};
use std::path::Path;

#[test]
fn docker_scenario_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.lstore");
    let src = dir.path().join("rootfs");
    std::fs::create_dir_all(src.join("etc/app")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"base\n").unwrap();
    std::fs::write(src.join("etc/app/config"), b"debug = false\n").unwrap();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(src.join("disk.img"), &big).unwrap();
    let src2 = dir.path().join("layer2");
    std::fs::create_dir_all(&src2).unwrap();
    std::fs::write(src2.join("added.txt"), b"second layer").unwrap();

    ok(&store, &["init", "--block-size", "4K", "--segment-size", "4MiB"]);
    fails(&store, &["init"], "exists");
    let base = ok(&store, &["import", src.to_str().unwrap(), "--name", "base"])
        .trim()
        .to_string();
    assert_eq!(base.len(), 32);
    let top = ok(
        &store,
        &[
            "import",
            src2.to_str().unwrap(),
            "--parent",
            "base",
            "--add",
            "--name",
            "top",
        ],
    )
    .trim()
    .to_string();
    // Without --add, a layer on a parent is exactly the folder: the parent's paths are gone.
    let exact = ok(&store, &["import", src2.to_str().unwrap(), "--parent", "base"]);
    assert_eq!(ok(&store, &["ls", exact.trim()]), "added.txt\t12\n");
    ok(&store, &["rmi", exact.trim()]);

    let layers: serde_json::Value = serde_json::from_str(&ok(&store, &["layers", "--json"])).unwrap();
    let top_json = layers.as_array().unwrap().iter().find(|l| l["name"] == "top").unwrap();
    assert_eq!(top_json["parent"], base.as_str());
    // etc, etc/app, etc/hostname, etc/app/config, disk.img and added.txt.
    assert_eq!(top_json["keys"], 6);
    assert_eq!(top_json["id"], top.as_str());

    // The parent's keys are visible beneath the child.
    assert_eq!(ok(&store, &["get", "top", "/etc/hostname"]), "base\n");
    let ls = ok(&store, &["ls", "top", "etc"]);
    // Folder by folder: a folder's own entries before those deeper down.
    assert_eq!(ls, "etc\t0\netc/app\t0\netc/hostname\t5\netc/app/config\t14\n");

    let c = ok(&store, &["create", &top[..8], "--name", "web"]).trim().to_string();
    let cs: serde_json::Value = serde_json::from_str(&ok(&store, &["containers", "--json"])).unwrap();
    assert_eq!(cs[0]["id"], c.as_str());
    assert_eq!(cs[0]["image"], top.as_str());

    let o = lstore(&store, &["put", "web", "etc/hostname", "-"], Some(b"container\n"));
    assert!(o.status.success());
    assert_eq!(ok(&store, &["get", "web", "etc/hostname"]), "container\n");
    assert_eq!(ok(&store, &["get", "top", "etc/hostname"]), "base\n");

    // 4 KiB into the 2 MB value: the store grows by about one block, the image is unchanged.
    let used = |s: &Path| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&ok(s, &["df", "--json"])).unwrap();
        v["used_bytes"].as_u64().unwrap()
    };
    let before = used(&store);
    let patch = vec![0xAB; 4096];
    let o = lstore(
        &store,
        &["write", "web", "disk.img", "--offset", "409600", "-"],
        Some(&patch),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let grew = used(&store) - before;
    assert!(grew < 4096 + 64 * 1024, "store grew {grew} bytes for a 4 KiB write");
    let read = lstore(
        &store,
        &["read", "web", "disk.img", "--offset", "409600", "--length", "4096"],
        None,
    )
    .stdout;
    assert!(read == patch, "container reads its own write");
    let orig = lstore(
        &store,
        &["read", "base", "disk.img", "--offset", "409600", "--length", "4096"],
        None,
    )
    .stdout;
    assert!(orig == big[409600..409600 + 4096], "the image is unchanged");

    ok(&store, &["del", "web", "etc/app/config"]);
    fails(&store, &["del", "web", "etc/app/config"], "no such key");
    assert!(ok(&store, &["get", "top", "etc/app/config"]).starts_with("debug"));

    let committed = ok(&store, &["commit", "web", "--name", "web-v1"]).trim().to_string();
    let layers: serde_json::Value = serde_json::from_str(&ok(&store, &["layers", "--json"])).unwrap();
    let v1 = layers
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == committed.as_str())
        .unwrap();
    assert_eq!(v1["parent"], top.as_str());
    // The two folders, etc/hostname, disk.img and added.txt (etc/app/config was deleted).
    assert_eq!(v1["keys"], 5);
    fails(&store, &["put", "web-v1", "x"], "read-only");
    fails(
        &store,
        &["write", "base", "disk.img", "--offset", "0", "/dev/null"],
        "read-only",
    );

    ok(&store, &["rm", "web"]);
    fails(&store, &["get", "web", "etc/hostname"], "no layer, container or image");
    assert_eq!(ok(&store, &["containers"]), "");
    assert_eq!(ok(&store, &["get", "web-v1", "etc/hostname"]), "container\n");

    let df: serde_json::Value = serde_json::from_str(&ok(&store, &["df", "--json"])).unwrap();
    for field in ["file_bytes", "used_bytes", "chunks", "block_size", "segment_size"] {
        assert!(df[field].as_u64().is_some(), "df lacks {field}");
    }
    assert_eq!(df["block_size"], 4096);
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.lstore");
    fails(&store, &["layers"], "no such file");
    ok(&store, &["init"]);
    fails(&store, &["get", "nope", "k"], "no layer, container or image");
    fails(&store, &["get", "ab", "k"], "no layer, container or image");
    fails(&dir.path().join("other"), &["init", "--block-size", "3K"], "block size");
    fails(&dir.path().join("other"), &["init", "--segment-size", "12x"], "size");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let id = ok(&store, &["import", empty.to_str().unwrap()]).trim().to_string();
    fails(&store, &["get", &id, ""], "empty key");
    fails(&store, &["get", &id, "missing"], "no such key");
    fails(&store, &["import", "/definitely/not/here"], "not/here");
    let c = ok(&store, &["create", &id]).trim().to_string();
    fails(&store, &["put", &c, "k", "/definitely/not/here"], "not/here");
    let long = "k".repeat(5000);
    fails(&store, &["put", &c, &long, "/dev/null"], "4096");
    fails(
        &store,
        &["write", &c, "k", "--offset", "18446744073709551615", "/etc/hostname"],
        "range",
    );

    // Not a store, and a damaged one.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![7u8; 100_000]).unwrap();
    fails(&junk, &["layers"], "not an lstore store");
    let damaged = dir.path().join("damaged");
    std::fs::copy(&store, &damaged).unwrap();
    let mut bytes = std::fs::read(&damaged).unwrap();
    // Every copy of both superblock slots.
    for b in &mut bytes[4096..20480] {
        *b ^= 0x55;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    fails(&damaged, &["layers"], "corrupt");

    // A store written by a newer format version is refused, not misread.
    let newer = dir.path().join("newer");
    std::fs::copy(&store, &newer).unwrap();
    let mut bytes = std::fs::read(&newer).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..4092]);
    bytes[4092..4096].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&newer, &bytes).unwrap();
    fails(&newer, &["layers"], "format version 99");

    // A name used by a layer and a container is ambiguous; so is a shared id prefix.
    // Layers and containers share one namespace: a name means one thing.
    ok(&store, &["tag", &id, "both"]);
    fails(&store, &["create", &id, "--name", "both"], "already in use");
    fails(&store, &["tag", &id, "beef"], "hex digits");
    ok(&store, &["put", &c, "k", "/etc/hostname"]);
    fails(
        &store,
        &["read", &c, "k", "--offset", "1", "--length", "18446744073709551615"],
        "range",
    );
    fails(&store, &["write", &c, "k"], "--offset");
    fails(&store, &["create", &id, "-v", "relative/path:/x"], "name");
    fails(&store, &["init"], "exists");
    fails(&store, &["nosuchcommand"], "unrecognized subcommand");
}

#[test]
fn a_writer_busies_writers_of_its_container_but_not_of_others_nor_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.lstore");
    let store = lstore::Store::create(&path, lstore::Options::default()).unwrap();
    let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
    let mine = store.create_container(&img, Some("mine")).unwrap();
    store.create_container(&img, Some("other")).unwrap();
    mine.put("k", b"library").unwrap();
    store.commit().unwrap();
    // A change not yet committed: this process holds the container until it commits.
    mine.put("pending", b"library").unwrap();
    ok(&path, &["layers"]);
    ok(&path, &["df"]);
    ok(&path, &["verify"]);
    // Another container, or a new one, is written beside this process at once.
    ok(&path, &["--wait", "0", "put", "other", "k", "-"]);
    ok(&path, &["--wait", "0", "create", "img", "--name", "third"]);
    let me = format!("being written by process {}", std::process::id());
    fails(&path, &["--wait", "0", "put", "mine", "k", "-"], &me);
    let started = std::time::Instant::now();
    fails(&path, &["--wait", "0.3", "rm", "mine"], &me);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "it waited");
    // gc runs only as the one writer.
    fails(&path, &["--wait", "0", "gc"], "gc needs it to itself");
    // This process sees what the others committed.
    assert_eq!(store.container("other").unwrap().get("k").unwrap().unwrap(), b"");
    assert!(store.container("third").is_ok());
    drop((mine, img, store));
    ok(&path, &["--wait", "0", "put", "mine", "k", "-"]);
    ok(&path, &["--wait", "0", "gc"]);
}
