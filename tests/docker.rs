//! Docker's storage semantics: build cache, names, container lifecycle, volumes, bind mounts.

mod common;
use common::{fails, lstore, ok};
use lstore::{Error, Mount, Options, Store};
use std::path::Path;

fn used(store: &Path) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&ok(store, &["df", "--json"])).unwrap();
    v["used_bytes"].as_u64().unwrap()
}

fn build_json(store: &Path, file: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(store, &["build", file.to_str().unwrap(), "--json"])).unwrap()
}

#[test]
fn build_cache_reuses_unchanged_steps_and_rebuilds_from_the_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.lstore");
    ok(&store, &["init"]);
    std::fs::create_dir_all(dir.path().join("ctx/app/src")).unwrap();
    std::fs::write(dir.path().join("ctx/app/src/main.rs"), b"fn main() {}").unwrap();
    std::fs::write(dir.path().join("ctx/app/Cargo.toml"), b"[package]").unwrap();
    std::fs::write(dir.path().join("ctx/config.txt"), b"v1").unwrap();
    let lf = dir.path().join("ctx/Layerfile");
    std::fs::write(
        &lf,
        "# a comment\nFROM scratch\n\nSET etc/os-release NAME=lstore os\nCOPY app /srv/app\nCOPY config.txt /etc/config\nDEL etc/os-release\n",
    )
    .unwrap();

    let first = build_json(&store, &lf);
    let steps = first["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert!(steps.iter().all(|s| s["cached"] == false));
    assert_eq!(steps[3]["layer"], first["layer"]);
    let layer = first["layer"].as_str().unwrap();
    assert_eq!(ok(&store, &["get", layer, "srv/app/src/main.rs"]), "fn main() {}");
    assert_eq!(ok(&store, &["get", layer, "etc/config"]), "v1");
    fails(&store, &["get", layer, "etc/os-release"], "no such key");
    assert_eq!(
        ok(&store, &["get", steps[0]["layer"].as_str().unwrap(), "etc/os-release"]),
        "NAME=lstore os"
    );

    // The same Layerfile again: every step cached, same id, the store does not grow.
    let before = used(&store);
    let second = build_json(&store, &lf);
    assert!(second["steps"].as_array().unwrap().iter().all(|s| s["cached"] == true));
    assert_eq!(second["layer"], first["layer"]);
    assert_eq!(used(&store), before);

    // Edit the file step 3 copies: steps 1-2 cached, 3 onwards built.
    std::fs::write(dir.path().join("ctx/config.txt"), b"v2").unwrap();
    let third = build_json(&store, &lf);
    let cached: Vec<bool> = third["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cached"].as_bool().unwrap())
        .collect();
    assert_eq!(cached, [true, true, false, false]);
    assert_ne!(third["layer"], first["layer"]);
    assert_eq!(
        ok(&store, &["get", third["layer"].as_str().unwrap(), "etc/config"]),
        "v2"
    );

    // Plain output names each step and ends with the final id; --name tags it.
    let text = ok(&store, &["build", lf.to_str().unwrap(), "--name", "app:latest"]);
    assert!(text.lines().next().unwrap().contains("cached"));
    assert_eq!(text.lines().last().unwrap(), third["layer"].as_str().unwrap());
    assert_eq!(ok(&store, &["get", "app:latest", "etc/config"]), "v2");
}

#[test]
fn layerfile_errors_name_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.lstore");
    ok(&store, &["init"]);
    let lf = dir.path().join("Layerfile");
    std::fs::write(&lf, "FROM scratch\nCOPY only-one-arg\n").unwrap();
    fails(&store, &["build", lf.to_str().unwrap()], "layerfile:2: copy takes");
    std::fs::write(&lf, "SET a b\n").unwrap();
    fails(
        &store,
        &["build", lf.to_str().unwrap()],
        "layerfile:1: the first instruction must be from",
    );
    std::fs::write(&lf, "FROM scratch\nRUN make\n").unwrap();
    fails(&store, &["build", lf.to_str().unwrap()], "unknown instruction 'run'");
    std::fs::write(&lf, "FROM nosuchimage\nSET a b\n").unwrap();
    fails(&store, &["build", lf.to_str().unwrap()], "nosuchimage");
    std::fs::write(&lf, "FROM scratch\nCOPY missing.txt /x\n").unwrap();
    fails(&store, &["build", lf.to_str().unwrap()], "missing.txt");
}

#[test]
fn library_build_cache_does_not_run_the_step_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let mut runs = 0;
    let (a, cached) = store
        .build(None, b"step 1", |b| {
            runs += 1;
            b.put("k", b"v")
        })
        .unwrap();
    assert!(!cached);
    let (b, cached) = store
        .build(None, b"step 1", |_| {
            runs += 1;
            Ok(())
        })
        .unwrap();
    assert!(cached);
    assert_eq!((a.id(), runs), (b.id(), 1));
    let (c, cached) = store.build(Some(&a), b"step 1", |b| b.put("k2", b"v")).unwrap();
    assert!(!cached, "another parent is another step");
    let (d, cached) = store.build(None, b"step 2", |b| b.put("k", b"w")).unwrap();
    assert!(!cached);
    assert_ne!(c.id(), d.id());
}

#[test]
fn names_and_layer_removal_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.lstore");
    ok(&store, &["init"]);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let base = ok(&store, &["import", src.to_str().unwrap(), "--name", "base"])
        .trim()
        .to_string();
    let child = ok(&store, &["import", src.to_str().unwrap(), "--parent", "base"])
        .trim()
        .to_string();
    ok(&store, &["tag", &child, "release"]);
    ok(&store, &["tag", "base", "release"]); // the name moves
    let layers: serde_json::Value = serde_json::from_str(&ok(&store, &["layers", "--json"])).unwrap();
    let named: Vec<_> = layers
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"] == "release")
        .collect();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0]["id"], base.as_str());

    fails(&store, &["rmi", "release"], "parent");
    let c = ok(&store, &["create", &child]).trim().to_string();
    fails(&store, &["rmi", &child], "container");
    ok(&store, &["rm", &c]);
    ok(&store, &["rmi", &child]);
    ok(&store, &["rmi", "release"]);
    assert_eq!(ok(&store, &["layers"]), "");
    fails(&store, &["rmi", "release"], "no layer, container or image");
}

#[test]
fn volumes_outlive_containers_and_stay_out_of_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.lstore");
    ok(&store, &["init"]);
    let src = dir.path().join("img");
    std::fs::create_dir_all(src.join("var/lib/db")).unwrap();
    std::fs::write(src.join("var/lib/db/seed.sql"), b"CREATE TABLE t;").unwrap();
    std::fs::write(
        src.join("etc/x")
            .parent()
            .map(|p| {
                std::fs::create_dir_all(p).unwrap();
                p.join("x")
            })
            .unwrap(),
        b"x",
    )
    .unwrap();
    ok(&store, &["import", src.to_str().unwrap(), "--name", "img"]);

    // -v with a missing volume creates it and fills it from the image (no data copied).
    let c1 = ok(&store, &["create", "img", "--name", "c1", "-v", "dbdata:/var/lib/db"])
        .trim()
        .to_string();
    let vols: serde_json::Value = serde_json::from_str(&ok(&store, &["volume", "ls", "--json"])).unwrap();
    assert_eq!(vols[0]["name"], "dbdata");
    assert_eq!(vols[0]["keys"], 1);
    assert_eq!(ok(&store, &["get", "c1", "/var/lib/db/seed.sql"]), "CREATE TABLE t;");
    let o = lstore(&store, &["put", "c1", "var/lib/db/rows", "-"], Some(b"1,2,3"));
    assert!(o.status.success());
    ok(&store, &["put", "c1", "etc/x", "/dev/null"]);
    assert_eq!(
        ok(&store, &["ls", "c1", "var/lib/db"]),
        // The mount's target is a folder of the container.
        "var/lib/db\t0\nvar/lib/db/rows\t5\nvar/lib/db/seed.sql\t15\n"
    );

    // commit leaves volume data out, as docker commit does.
    let layer = ok(&store, &["commit", "c1"]).trim().to_string();
    fails(&store, &["get", &layer, "var/lib/db/rows"], "no such key");
    assert_eq!(ok(&store, &["get", &layer, "etc/x"]), "");

    fails(&store, &["volume", "rm", "dbdata"], "mounted");
    ok(&store, &["rm", &c1]);
    // The data survived the container and is seen by the next one, read-only here.
    let c2 = ok(
        &store,
        &[
            "create",
            "img",
            "--mount",
            "type=volume,source=dbdata,target=/var/lib/db,readonly",
        ],
    )
    .trim()
    .to_string();
    assert_eq!(ok(&store, &["get", &c2, "var/lib/db/rows"]), "1,2,3");
    fails(&store, &["put", &c2, "var/lib/db/rows", "/dev/null"], "read-only");
    fails(&store, &["del", &c2, "var/lib/db/rows"], "read-only");
    // Outside the mount the container is writable as usual.
    ok(&store, &["put", &c2, "tmp/scratch", "/dev/null"]);
    let inspect: serde_json::Value = serde_json::from_str(&ok(&store, &["inspect", &c2, "--json"])).unwrap();
    assert_eq!(inspect["mounts"][0]["source"], "dbdata");
    assert_eq!(inspect["mounts"][0]["readonly"], true);
    ok(&store, &["rm", &c2]);
    ok(&store, &["volume", "rm", "dbdata"]);
    fails(&store, &["volume", "inspect", "dbdata"], "dbdata");

    // volume-nocopy leaves a fresh volume empty; an explicit empty volume likewise fills.
    let c3 = ok(
        &store,
        &[
            "create",
            "img",
            "--mount",
            "type=volume,src=fresh,dst=/var/lib/db,volume-nocopy",
        ],
    )
    .trim()
    .to_string();
    assert_eq!(ok(&store, &["ls", &c3, "var/lib/db"]), "var/lib/db\t0\n");
    ok(&store, &["volume", "create", "made"]);
    fails(&store, &["volume", "create", "made"], "in use");
    let c4 = ok(&store, &["create", "img", "-v", "made:/var/lib/db"])
        .trim()
        .to_string();
    assert_eq!(ok(&store, &["get", &c4, "var/lib/db/seed.sql"]), "CREATE TABLE t;");
    fails(&store, &["create", "img", "-v", "made"], "source:/target");
    fails(
        &store,
        &["create", "img", "--mount", "type=tmpfs,target=/x"],
        "unsupported",
    );
}

#[test]
fn bind_mounts_read_and_write_real_files_and_refuse_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.lstore");
    ok(&store, &["init"]);
    let host = dir.path().join("host");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("a.txt"), b"from host").unwrap();
    std::fs::write(host.join("sub/b.txt"), b"nested").unwrap();
    let outside = dir.path().join("secret");
    std::fs::write(&outside, b"do not read").unwrap();
    std::os::unix::fs::symlink(&outside, host.join("leak")).unwrap();
    let img = dir.path().join("img");
    std::fs::create_dir_all(img.join("mnt")).unwrap();
    std::fs::write(img.join("mnt/hidden"), b"image key under the mount").unwrap();
    std::fs::write(img.join("top"), b"t").unwrap();
    ok(&store, &["import", img.to_str().unwrap(), "--name", "img"]);

    let spec = format!("{}:/mnt", host.display());
    let c = ok(&store, &["create", "img", "-v", &spec, "--name", "b"])
        .trim()
        .to_string();
    assert_eq!(ok(&store, &["get", "b", "/mnt/a.txt"]), "from host");
    assert_eq!(
        ok(
            &store,
            &["read", "b", "mnt/sub/b.txt", "--offset", "2", "--length", "3"]
        ),
        "ste"
    );
    // The mount hides the image's keys under it.
    assert_eq!(
        ok(&store, &["ls", "b", "mnt"]),
        "mnt\t0\nmnt/a.txt\t9\nmnt/sub/b.txt\t6\n"
    );
    assert_eq!(ok(&store, &["ls", "b"]).lines().count(), 3);
    let o = lstore(&store, &["put", "b", "mnt/new/c.txt", "-"], Some(b"written through"));
    assert!(o.status.success());
    assert_eq!(std::fs::read(host.join("new/c.txt")).unwrap(), b"written through");
    let o = lstore(
        &store,
        &["write", "b", "mnt/a.txt", "--offset", "5", "-"],
        Some(b"HOST"),
    );
    assert!(o.status.success());
    assert_eq!(std::fs::read(host.join("a.txt")).unwrap(), b"from HOST");
    ok(&store, &["del", "b", "mnt/sub/b.txt"]);
    assert!(!host.join("sub/b.txt").exists());

    fails(&store, &["get", "b", "mnt/../secret"], "leave the bind mount");
    fails(&store, &["get", "b", "mnt/leak"], "leave the bind mount");
    fails(&store, &["put", "b", "mnt/./x", "/dev/null"], "leave the bind mount");
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not read");

    let cs: serde_json::Value = serde_json::from_str(&ok(&store, &["containers", "--json"])).unwrap();
    assert_eq!(cs[0]["mounts"][0]["type"], "bind");
    assert_eq!(cs[0]["mounts"][0]["target"], "/mnt");

    let ro = format!("type=bind,source={},target=/data,readonly", host.display());
    let r = ok(&store, &["create", "img", "--mount", &ro]).trim().to_string();
    assert_eq!(ok(&store, &["get", &r, "data/a.txt"]), "from HOST");
    fails(&store, &["put", &r, "data/a.txt", "/dev/null"], "read-only");
    fails(&store, &["create", "img", "-v", "/no/such/dir:/x"], "does not exist");
    ok(&store, &["rm", &c]);
}

#[test]
fn nested_mounts_longest_target_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("s"), Options::default()).unwrap();
    let img = store.new_layer(None).unwrap().finish(None).unwrap();
    let outer = Mount::parse_volume_flag("outer:/data").unwrap();
    let inner = Mount::parse_volume_flag("inner:/data/deep").unwrap();
    let c = store.create_container_with(&img, None, &[outer, inner]).unwrap();
    c.put("data/a", b"1").unwrap();
    c.put("data/deep/b", b"2").unwrap();
    c.put("dataset", b"3").unwrap();
    store.commit().unwrap();
    let mut b = store.new_layer(None).unwrap();
    b.put("x", b"y").unwrap();
    let other = b.finish(None).unwrap();
    let c2 = store
        .create_container_with(&other, None, &[Mount::parse_volume_flag("inner:/v").unwrap()])
        .unwrap();
    assert_eq!(c2.get("v/b").unwrap().unwrap(), b"2");
    assert!(c2.get("v/a").unwrap().is_none());
    let keys: Vec<Vec<u8>> = c.list("").unwrap().map(|i| i.key).collect();
    // Folder by folder: the root's entries first.
    assert_eq!(keys, [b"dataset".to_vec(), b"data/a".to_vec(), b"data/deep/b".to_vec()]);
    assert!(matches!(c.put("data", b"x"), Err(Error::InvalidKey(_))));
    assert!(store.remove_volume("inner").is_err());
}

#[test]
fn mounts_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let store = Store::create(&path, Options::default()).unwrap();
        let img = store.new_layer(None).unwrap().finish(Some("img")).unwrap();
        let c = store
            .create_container_with(&img, Some("c"), &[Mount::parse_volume_flag("v:/data:ro").unwrap()])
            .unwrap();
        assert!(matches!(c.put("data/x", b"1"), Err(Error::ReadOnly(_))));
        c.put("other", b"1").unwrap();
        store.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let c = store.container("c").unwrap();
    assert_eq!(
        c.info().unwrap().mounts,
        vec![Mount::parse_volume_flag("v:/data:ro").unwrap()]
    );
    assert!(matches!(c.put("data/x", b"1"), Err(Error::ReadOnly(_))));
    assert_eq!(c.get("other").unwrap().unwrap(), b"1");
}
