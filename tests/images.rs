//! Whole images in and out: `save` writes OCI layouts that skopeo verifies and umoci unpacks to
//! what `export` writes; `load` reads OCI layouts (plain, gzip, zstd layers), `docker save`
//! archives and multi-platform indexes, checks every digest, and reuses stored layers; tags
//! and `rmi` behave as Docker's. skopeo and umoci are the reference tools (`.ci/run` installs
//! them).

mod common;

use common::{fails, ok};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn run(tool: &str, args: &[&str], dir: &Path) -> String {
    let o = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is needed for this test (.ci/run installs it): {e}"));
    assert!(
        o.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every entry below `root` with its kind, mode, owner, size, mtime, target, xattrs and a
/// hash of its bytes; inode numbers and the root's own times aside.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let what = if m.file_type().is_symlink() {
                format!("-> {:?}", std::fs::read_link(&p).unwrap())
            } else if m.is_file() {
                format!("{:?} n{}", blake3::hash(&std::fs::read(&p).unwrap()), m.nlink())
            } else {
                String::new()
            };
            let mut xattrs: Vec<String> = xattr_names(&p);
            xattrs.sort();
            let mtime = if m.is_dir() { 0 } else { m.mtime() };
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} s{} t{mtime} {what} {xattrs:?}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    if m.is_dir() { 0 } else { m.size() }
                ),
            );
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn xattr_names(p: &Path) -> Vec<String> {
    let o = Command::new("getfattr").arg("-h").arg("-d").arg("-m-").arg(p).output();
    match o {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A two-layer image made in the store: a base, and a change that adds, replaces and deletes.
fn two_layers(s: &Path, tmp: &Path) {
    let base = tmp.join("base");
    for d in ["etc/conf.d", "usr/bin", "var/cache"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(base.join("etc/passwd"), "root:x:0:0\n").unwrap();
    std::fs::write(base.join("etc/conf.d/a"), "a").unwrap();
    std::fs::write(base.join("var/cache/junk"), vec![7u8; 100_000]).unwrap();
    std::fs::write(base.join("usr/bin/tool"), common::noise(300_000, 3)).unwrap();
    std::os::unix::fs::symlink("usr/bin", base.join("bin")).unwrap();
    ok(s, &["import", base.to_str().unwrap(), "--name", "app-base"]);
    let c = ok(s, &["create", "app-base"]).trim().to_string();
    ok(s, &["put", &c, "etc/passwd", "-"]);
    ok(s, &["del", "-r", &c, "var/cache"]);
    ok(s, &["mkdir", "-p", &c, "srv/data"]);
    ok(s, &["write", &c, "usr/bin/tool", "--offset", "4096", "-"]);
    ok(s, &["commit", &c, "--name", "app"]);
}

#[test]
fn a_saved_image_passes_skopeo_and_umoci_and_loads_back_with_the_same_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    two_layers(&s, tmp.path());
    let layout = tmp.path().join("app-oci");
    let manifest = ok(&s, &["save", "app", layout.to_str().unwrap()]).trim().to_string();
    // skopeo reads every blob and checks its digest.
    run("skopeo", &["copy", "oci:app-oci:latest", "dir:copied"], tmp.path());
    // umoci unpacks it to what export writes.
    run("umoci", &["unpack", "--image", "app-oci:latest", "bundle"], tmp.path());
    ok(&s, &["export", "app", tmp.path().join("exported").to_str().unwrap()]);
    assert_eq!(
        tree(&tmp.path().join("bundle/rootfs")),
        tree(&tmp.path().join("exported"))
    );
    // Into a new store: the same image id and diffIDs, and saved again the same manifest.
    let s2 = tmp.path().join("s2");
    ok(&s2, &["init"]);
    let loaded = ok(&s2, &["load", layout.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&loaded).unwrap();
    let image = &v["images"][0];
    assert_eq!(image["tags"][0], "app:latest");
    assert_eq!(image["imported"], 2);
    let again = tmp.path().join("again");
    let manifest2 = ok(&s2, &["save", "app", again.to_str().unwrap()]).trim().to_string();
    assert_eq!(manifest, manifest2, "the same manifest, config and layer digests");
    // Loaded again, nothing is applied: the layers are found by chain.
    let reloaded = ok(&s2, &["load", again.to_str().unwrap()]);
    assert!(reloaded.contains("0 layers applied, 2 already stored"), "{reloaded}");
    // Through the image's tag, everything that takes a layer takes the image.
    let c = ok(&s2, &["create", "app"]).trim().to_string();
    assert_eq!(ok(&s2, &["get", &c, "etc/passwd"]), "");
}

/// A new store (in a new temporary folder) holding one small layer named `name`.
fn store_with_a_layer_named(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    let dir = tmp.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("f"), "x").unwrap();
    ok(&s, &["import", dir.to_str().unwrap(), "--name", name]);
    (tmp, s)
}

#[test]
fn a_layer_whose_name_is_no_image_tag_is_saved_untagged_and_says_why() {
    let (tmp, s) = store_with_a_layer_named("Base");
    let layout = tmp.path().join("out");
    let o = common::lstore(&s, &["save", "Base", layout.to_str().unwrap()], None);
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("saved with no tag") && err.contains("'Base'"), "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("sha256:"),
        "the manifest's digest"
    );
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(!index.contains("Base"), "{index}");
    // As an untagged image is saved (docker save of an id): no name in the layout, so that
    // loaded it stays untagged. skopeo takes the layout by its one manifest.
    run("skopeo", &["inspect", "oci:out"], tmp.path());
    let s2 = tmp.path().join("s2");
    ok(&s2, &["init"]);
    let o = common::lstore(&s2, &["load", layout.to_str().unwrap()], None);
    assert!(o.status.success() && o.stderr.is_empty(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("<none>"), "{o:?}");
}

#[test]
fn a_saved_layer_loads_back_into_its_own_store_untagged_where_its_name_holds_the_tag() {
    let (tmp, s) = store_with_a_layer_named("web");
    let layout = tmp.path().join("out");
    ok(&s, &["save", "web", layout.to_str().unwrap()]);
    // `web:latest` is what the layer's name `web` stands for: the image is loaded without it,
    // and the one line on stderr says why.
    let o = common::lstore(&s, &["load", layout.to_str().unwrap()], None);
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("'web:latest'") && err.contains("held by a layer"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("<none>"), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&ok(&s, &["load", layout.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(v["images"][0]["skipped_tags"], serde_json::json!(["web:latest"]));
    assert_eq!(v["images"][0]["skip_reasons"], serde_json::json!(["held_by_name"]));
    // Through the library: the reason, typed.
    let store = lstore::Store::open(&s).unwrap();
    let loaded = lstore::load(&store, &layout, &Default::default()).unwrap();
    assert_eq!(loaded[0].skipped_tags[0].why, lstore::SkipReason::HeldByName);
    drop((loaded, store));
    // Asked for by --tag, it is refused with a message that names what holds it.
    fails(
        &s,
        &["load", layout.to_str().unwrap(), "--tag", "web"],
        "name 'web:latest' (a layer or container is named 'web') is already in use",
    );
    // A name with control characters is shown escaped, on its one line.
    let index = layout.join("index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    assert!(text.contains("\"web:latest\""), "{text}");
    std::fs::write(&index, text.replace("\"web:latest\"", "\"x\\nInjected\\u001b[31m\"")).unwrap();
    let s3 = tmp.path().join("s3");
    ok(&s3, &["init"]);
    let o = common::lstore(&s3, &["load", layout.to_str().unwrap()], None);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(o.stderr.iter().filter(|&&b| b == b'\n').count(), 1, "{o:?}");
    assert!(!o.stderr.contains(&0x1b), "{o:?}");
}

#[test]
fn docker_save_archives_and_compressed_layouts_load_and_reuse_stored_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    two_layers(&s, tmp.path());
    let manifest = ok(&s, &["save", "app", tmp.path().join("app").to_str().unwrap()]);
    run(
        "skopeo",
        &["copy", "oci:app:latest", "docker-archive:app.tar:web:v1"],
        tmp.path(),
    );
    run(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            "--dest-compress",
            "oci:app:latest",
            "oci:zst:v2",
        ],
        tmp.path(),
    );
    run(
        "skopeo",
        &["copy", "--dest-compress", "oci:app:latest", "oci:gz:v3"],
        tmp.path(),
    );
    let s2 = tmp.path().join("s2");
    ok(&s2, &["init"]);
    let first = ok(&s2, &["load", tmp.path().join("app.tar").to_str().unwrap()]);
    assert!(first.contains("docker.io/library/web:v1: 2 layers applied"), "{first}");
    // A docker save tar gzipped, and one from standard input, load the same.
    let st = Command::new("gzip")
        .arg("-k")
        .arg(tmp.path().join("app.tar"))
        .status()
        .unwrap();
    assert!(st.success());
    let again = ok(&s2, &["load", tmp.path().join("app.tar.gz").to_str().unwrap()]);
    assert!(again.contains("0 layers applied, 2 already stored"), "{again}");
    let piped = common::lstore(
        &s2,
        &["load", "-"],
        Some(&std::fs::read(tmp.path().join("app.tar")).unwrap()),
    );
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    for (dir, tag) in [("zst", "zst:v2"), ("gz", "gz:v3")] {
        let out = ok(&s2, &["load", tmp.path().join(dir).to_str().unwrap()]);
        assert!(
            out.contains(tag) && out.contains("0 layers applied, 2 already stored"),
            "{out}"
        );
    }
    // One image (the same config bytes), three tags, and the file system of the original.
    let images = ok(&s2, &["images"]);
    assert_eq!(images.lines().count(), 1, "{images}");
    ok(&s2, &["export", "gz:v3", tmp.path().join("x").to_str().unwrap()]);
    ok(&s, &["export", "app", tmp.path().join("y").to_str().unwrap()]);
    assert_eq!(tree(&tmp.path().join("x")), tree(&tmp.path().join("y")));
    // The layers came in compressed by skopeo; saved again they are the original tars, so the
    // manifest (config and layer digests) is the same bytes.
    let again = ok(&s2, &["save", "gz:v3", tmp.path().join("again").to_str().unwrap()]);
    assert_eq!(again, manifest);
}

#[test]
fn an_umoci_built_image_with_whiteouts_loads_as_umoci_unpacks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    run("umoci", &["init", "--layout", "img"], d);
    run("umoci", &["new", "--image", "img:t"], d);
    run("umoci", &["unpack", "--image", "img:t", "b"], d);
    let root = d.join("b/rootfs");
    std::fs::create_dir_all(root.join("opt/dir/sub")).unwrap();
    std::fs::write(root.join("opt/dir/sub/f"), "f").unwrap();
    std::fs::write(root.join("opt/gone"), "gone").unwrap();
    std::fs::write(root.join("opt/kept"), "kept").unwrap();
    run("umoci", &["repack", "--image", "img:t", "b"], d);
    std::fs::remove_dir_all(d.join("b")).unwrap();
    run("umoci", &["unpack", "--image", "img:t", "b"], d);
    let root = d.join("b/rootfs");
    std::fs::remove_file(root.join("opt/gone")).unwrap();
    std::fs::remove_dir_all(root.join("opt/dir")).unwrap();
    std::fs::create_dir_all(root.join("opt/dir")).unwrap();
    std::fs::write(root.join("opt/dir/new"), "new").unwrap();
    std::fs::write(root.join("opt/kept"), "changed").unwrap();
    run("umoci", &["repack", "--image", "img:t", "b"], d);
    run("umoci", &["unpack", "--image", "img:t", "want"], d);
    let s = d.join("s");
    ok(&s, &["init"]);
    ok(&s, &["load", d.join("img").to_str().unwrap(), "--tag", "umoci:t"]);
    ok(&s, &["export", "umoci:t", d.join("got").to_str().unwrap()]);
    assert_eq!(tree(&d.join("want/rootfs")), tree(&d.join("got")));
    // Each layer gives back its own tar: saved again, the layer digests are the diffIDs of
    // the config umoci wrote.
    ok(&s, &["save", "umoci:t", d.join("out").to_str().unwrap()]);
    run("skopeo", &["copy", "oci:out:t", "dir:checked"], d);
    let json = |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let blob_of = |layout: &str, digest: &str| d.join(layout).join("blobs/sha256").join(&digest[7..]);
    let first_manifest = |layout: &str| {
        let index = json(&d.join(layout).join("index.json"));
        json(&blob_of(layout, index["manifests"][0]["digest"].as_str().unwrap()))
    };
    let umoci_manifest = first_manifest("img");
    let umoci_config = json(&blob_of("img", umoci_manifest["config"]["digest"].as_str().unwrap()));
    let saved = first_manifest("out");
    let saved_layers: Vec<&str> = saved["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let diff_ids: Vec<&str> = umoci_config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(saved_layers, diff_ids);
    assert_eq!(
        saved["config"]["digest"], umoci_manifest["config"]["digest"],
        "the config's own bytes"
    );
}

/// An OCI layout with one plain layer, written by hand so that tests can break it.
struct Handmade {
    dir: std::path::PathBuf,
    layer: String,
    config: String,
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let hex = format!("{:x}", sha2_of(data));
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

struct Hex([u8; 32]);
impl std::fmt::LowerHex for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn sha2_of(data: &[u8]) -> Hex {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), data).unwrap();
    let o = Command::new("sha256sum").arg(tmp.path()).output().unwrap();
    let hex = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    Hex(out)
}

fn descriptor(media: &str, digest: &str, size: usize, extra: &str) -> String {
    format!(r#"{{"mediaType":"{media}","digest":"{digest}","size":{size}{extra}}}"#)
}

/// A layout whose index holds `platforms` (each its own config and manifest over one layer).
fn handmade(tmp: &Path, name: &str, platforms: &[&str]) -> Handmade {
    let dir = tmp.join(name);
    let src = tmp.join(format!("{name}-src"));
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), name).unwrap();
    let tar = tmp.join(format!("{name}.tar"));
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("etc")
        .status()
        .unwrap();
    assert!(st.success());
    let layer_bytes = std::fs::read(&tar).unwrap();
    let layer = write_blob(&dir, &layer_bytes);
    let mut manifests = Vec::new();
    let mut config = String::new();
    for p in platforms {
        let (os, arch) = p.split_once('/').unwrap();
        let cfg =
            format!(r#"{{"architecture":"{arch}","os":"{os}","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#);
        config = write_blob(&dir, cfg.as_bytes());
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
            descriptor("application/vnd.oci.image.config.v1+json", &config, cfg.len(), ""),
            descriptor("application/vnd.oci.image.layer.v1.tar", &layer, layer_bytes.len(), "")
        );
        let md = write_blob(&dir, m.as_bytes());
        let plat = format!(r#","platform":{{"architecture":"{arch}","os":"{os}"}}"#);
        manifests.push(descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            &md,
            m.len(),
            &plat,
        ));
    }
    let top = if manifests.len() == 1 {
        manifests[0].replace("}", r#","annotations":{"org.opencontainers.image.ref.name":"v1"}}"#)
    } else {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            manifests.join(",")
        );
        let id = write_blob(&dir, idx.as_bytes());
        descriptor(
            "application/vnd.oci.image.index.v1+json",
            &id,
            idx.len(),
            r#","annotations":{"org.opencontainers.image.ref.name":"multi"}"#,
        )
    };
    std::fs::write(
        dir.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{top}]}}"#),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    Handmade { dir, layer, config }
}

fn blob(h: &Handmade, digest: &str) -> std::path::PathBuf {
    h.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

#[test]
fn a_multi_platform_index_loads_the_platform_asked_for_or_this_machines() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    let h = handmade(tmp.path(), "multi", &["linux/riscv64", "linux/amd64", "linux/arm64"]);
    let path = h.dir.to_str().unwrap();
    fails(
        &s,
        &["load", path, "--platform", "windows/amd64"],
        "linux/riscv64, linux/amd64, linux/arm64",
    );
    fails(&s, &["load", path, "--platform", "amd64"], "os/arch");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&s, &["load", path, "--platform", "linux/riscv64", "--json"])).unwrap();
    let id = v["images"][0]["id"].as_str().unwrap().to_string();
    // The riscv64 config is the first written: the last one written is arm64's.
    assert_ne!(id, h.config);
    assert_eq!(v["images"][0]["tags"][0], "multi:multi");
    let inspect = ok(&s, &["images", "--json"]);
    assert!(inspect.contains(&id));
    // The same manifests listed straight in index.json: still one image, the one asked for.
    let nested = std::fs::read_to_string(h.dir.join("index.json")).unwrap();
    let inner = nested
        .split("\"digest\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let inner = std::fs::read_to_string(blob(&h, &inner)).unwrap();
    let flat = tmp.path().join("flat");
    let st = Command::new("cp").arg("-r").arg(&h.dir).arg(&flat).status().unwrap();
    assert!(st.success());
    std::fs::write(flat.join("index.json"), &inner).unwrap();
    let s2 = tmp.path().join("s2");
    ok(&s2, &["init"]);
    let v: serde_json::Value = serde_json::from_str(&ok(
        &s2,
        &["load", flat.to_str().unwrap(), "--platform", "linux/riscv64", "--json"],
    ))
    .unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    assert_eq!(v["images"][0]["id"].as_str().unwrap(), id);
    fails(
        &s2,
        &["load", flat.to_str().unwrap(), "--platform", "linux/s390x"],
        "linux/riscv64, linux/amd64, linux/arm64",
    );
    // Without --platform, this machine's (CI runs on x86_64 or arm64, both in the index).
    let v: serde_json::Value = serde_json::from_str(&ok(&s, &["load", path, "--json"])).unwrap();
    assert_ne!(v["images"][0]["id"].as_str().unwrap(), id);
    assert_eq!(ok(&s, &["images"]).lines().count(), 2);
}

#[test]
fn a_damaged_or_hostile_archive_is_refused_and_the_store_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    let before = (ok(&s, &["layers"]), ok(&s, &["images"]));
    let unchanged = || assert_eq!((ok(&s, &["layers"]), ok(&s, &["images"])), before);

    // A flipped byte in a layer blob: its digest no longer matches.
    let h = handmade(tmp.path(), "flip", &["linux/amd64"]);
    let mut bytes = std::fs::read(blob(&h, &h.layer)).unwrap();
    bytes[600] ^= 1;
    std::fs::write(blob(&h, &h.layer), &bytes).unwrap();
    fails(&s, &["load", h.dir.to_str().unwrap()], "does not match its digest");
    unchanged();

    // A layer blob longer than its descriptor says.
    let h = handmade(tmp.path(), "long", &["linux/amd64"]);
    let mut bytes = std::fs::read(blob(&h, &h.layer)).unwrap();
    bytes.extend_from_slice(&[0u8; 512]);
    std::fs::write(blob(&h, &h.layer), &bytes).unwrap();
    fails(&s, &["load", h.dir.to_str().unwrap()], "bytes, its descriptor says");
    unchanged();

    // A missing config blob, and an index that is not JSON.
    let h = handmade(tmp.path(), "noconfig", &["linux/amd64"]);
    std::fs::remove_file(blob(&h, &h.config)).unwrap();
    fails(&s, &["load", h.dir.to_str().unwrap()], "is missing");
    std::fs::write(h.dir.join("index.json"), "{not json").unwrap();
    fails(&s, &["load", h.dir.to_str().unwrap()], "index.json is not valid");
    unchanged();

    // A docker save manifest whose names climb out of the archive.
    let d = tmp.path().join("climb");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("manifest.json"),
        r#"[{"Config":"../../etc/passwd","RepoTags":["x:y"],"Layers":[]}]"#,
    )
    .unwrap();
    let archive = tmp.path().join("climb.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&d)
        .arg("manifest.json")
        .status()
        .unwrap();
    assert!(st.success());
    fails(&s, &["load", archive.to_str().unwrap()], "leads out of the archive");
    fails(&s, &["load", d.to_str().unwrap()], "leads out of the archive");
    unchanged();

    // Neither layout nor archive.
    fails(
        &s,
        &["load", tmp.path().join("s").to_str().unwrap()],
        "not a readable tar",
    );
    fails(&s, &["load", "/nonexistent/x"], "/nonexistent/x");
    // A layer whose uncompressed bytes are not the config's diffID.
    let h = handmade(tmp.path(), "wrongdiff", &["linux/amd64"]);
    let other = handmade(tmp.path(), "other", &["linux/amd64"]);
    // (the descriptor is made to match the other layer, so only the diffID can tell)
    let wrong = std::fs::read(blob(&other, &other.layer)).unwrap();
    let idx = std::fs::read_to_string(h.dir.join("index.json")).unwrap();
    let m_digest = idx
        .split("\"digest\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let m = std::fs::read_to_string(blob(&h, &m_digest)).unwrap();
    let right = std::fs::read(blob(&h, &h.layer)).unwrap();
    let m = m.replace(&h.layer, &other.layer).replace(
        &format!("\"size\":{}", right.len()),
        &format!("\"size\":{}", wrong.len()),
    );
    std::fs::write(blob(&h, &other.layer), &wrong).unwrap();
    let new_m = write_blob(&h.dir, m.as_bytes());
    let old_size = format!("\"size\":{}", std::fs::metadata(blob(&h, &m_digest)).unwrap().len());
    let idx = idx
        .replace(&m_digest, &new_m)
        .replace(&old_size, &format!("\"size\":{}", m.len()));
    std::fs::write(h.dir.join("index.json"), idx).unwrap();
    fails(&s, &["load", h.dir.to_str().unwrap()], "but the config says");
    unchanged();
    // save refuses a folder that holds something, and a file.
    ok(&s, &["load", other.dir.to_str().unwrap()]);
    fails(&s, &["save", "other:v1", s.to_str().unwrap()], "not a directory");
    fails(
        &s,
        &["save", "other:v1", other.dir.to_str().unwrap()],
        "missing or empty",
    );
}

#[test]
fn an_image_given_more_tags_than_it_may_have_is_not_added_at_all() {
    let tmp = tempfile::tempdir().unwrap();
    let store = lstore::Store::create(tmp.path().join("s"), Default::default()).unwrap();
    let layer = store.new_layer(None).unwrap().finish(Some("base")).unwrap();
    let names: Vec<String> = (0..1025).map(|i| format!("r{i}:t")).collect();
    let tags: Vec<&str> = names.iter().map(String::as_str).collect();
    let err = store.add_image(b"{}", Some(&layer), &tags).unwrap_err();
    assert!(err.to_string().contains("at most 1024"), "{err}");
    assert!(
        store.images().unwrap().is_empty(),
        "no image, not one with 1024 of them"
    );
    store.add_image(b"{}", Some(&layer), &tags[..1024]).unwrap();
    assert_eq!(store.images().unwrap()[0].tags.len(), 1024);
}

#[test]
fn tags_move_rmi_untags_then_removes_and_prune_removes_what_nothing_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    ok(&s, &["init"]);
    let a = handmade(tmp.path(), "a", &["linux/amd64"]);
    let b = handmade(tmp.path(), "b", &["linux/amd64"]);
    ok(&s, &["load", a.dir.to_str().unwrap()]);
    ok(&s, &["load", b.dir.to_str().unwrap()]);
    ok(&s, &["tag", "a:v1", "web"]);
    ok(&s, &["tag", "a:v1", "web:prod"]);
    // A tag moves: b takes web:latest from a.
    ok(&s, &["tag", "b:v1", "web:latest"]);
    let images = ok(&s, &["images"]);
    assert!(images.lines().any(|l| l.contains("a:v1,web:prod")), "{images}");
    assert!(images.lines().any(|l| l.contains("b:v1,web:latest")), "{images}");
    // A tag cannot be a layer's or container's name, nor the other way round.
    ok(&s, &["tag", "a:v1", "taken"]);
    let c = ok(&s, &["create", "b:v1"]).trim().to_string();
    fails(&s, &["commit", &c, "--name", "taken"], "taken");
    ok(&s, &["rm", &c]);
    ok(&s, &["rmi", "taken"]);
    // Tags are checked as docker tag checks them.
    for bad in ["UPPER:Case", "sha256:c9ea", "x:y:z", "a:", ":a", "-", "web:.v1", "a//b"] {
        fails(&s, &["tag", "b:v1", bad], "image tag");
    }
    ok(&s, &["tag", "b:v1", "localhost:5000/team/app_x:1.0-rc.1"]);
    assert_eq!(
        ok(&s, &["rmi", "localhost:5000/team/app_x:1.0-rc.1"]).trim(),
        "Untagged: localhost:5000/team/app_x:1.0-rc.1"
    );
    // rmi of one tag untags; of the last, removes the image and its unused layers.
    let out = ok(&s, &["rmi", "web:prod"]);
    assert_eq!(out.trim(), "Untagged: web:prod");
    let c = ok(&s, &["create", "a:v1"]).trim().to_string();
    fails(&s, &["rmi", "a:v1"], "container");
    ok(&s, &["rm", &c]);
    let out = ok(&s, &["rmi", "a:v1"]);
    assert!(
        out.contains("Untagged: a:v1") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(ok(&s, &["layers"]).lines().count(), 1, "b's layer alone is left");
    // The top layer of an image is not removed as a layer.
    let top = ok(&s, &["layers"]).split_whitespace().next().unwrap().to_string();
    fails(&s, &["rmi", &top], "rmi");
    // rmi by tag removes the image once its last tag goes.
    ok(&s, &["rmi", "web:latest"]);
    ok(&s, &["rmi", "b:v1"]);
    assert_eq!(ok(&s, &["images"]), "");
    assert_eq!(ok(&s, &["layers"]), "");
    // An image whose tags all moved away is dangling, and prune removes it with its layer.
    ok(&s, &["load", b.dir.to_str().unwrap(), "--tag", "keep:1"]);
    ok(&s, &["load", a.dir.to_str().unwrap()]);
    ok(&s, &["tag", "keep:1", "a:v1"]);
    assert!(ok(&s, &["images"]).contains("<none>"));
    assert_eq!(
        ok(&s, &["image-prune"]).lines().last().unwrap(),
        "1 images, 1 layers removed"
    );
    assert_eq!(ok(&s, &["images"]).lines().count(), 1);
    assert_eq!(ok(&s, &["layers"]).lines().count(), 1);
}

/// An OCI layout at `tmp/name` of the given layer tars, tagged `v1`.
fn layout_of(tmp: &Path, name: &str, layers: &[Vec<u8>]) -> std::path::PathBuf {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{:x}", sha2_of(l))).collect();
    layout_with(tmp, name, layers, &diff_ids, "application/vnd.oci.image.layer.v1.tar")
}

/// As `layout_of`, with the layer blobs as given and the config's diffIDs as given.
fn layout_with(tmp: &Path, name: &str, layers: &[Vec<u8>], diff_ids: &[String], media: &str) -> std::path::PathBuf {
    let dir = tmp.join(name);
    let digests: Vec<String> = layers.iter().map(|l| write_blob(&dir, l)).collect();
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let config = write_blob(&dir, cfg.as_bytes());
    let layer_descs: Vec<String> = digests
        .iter()
        .zip(layers)
        .map(|(d, l)| descriptor(media, d, l.len(), ""))
        .collect();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", &config, cfg.len(), ""),
        layer_descs.join(",")
    );
    let md = write_blob(&dir, m.as_bytes());
    let top = descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        &md,
        m.len(),
        r#","annotations":{"org.opencontainers.image.ref.name":"v1"}"#,
    );
    std::fs::write(
        dir.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{top}]}}"#),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir
}

#[test]
fn gnu_and_python_changesets_apply_as_umoci_applies_them_and_come_back_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The base: GNU tar of a small tree.
    let base = d.join("base-src");
    for dir in ["etc/conf.d", "usr/lib", "opaque/sub", "gone-dir/x"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    for (f, body) in [
        ("etc/passwd", "root"),
        ("etc/conf.d/a", "a"),
        ("usr/lib/libx.so", "x1"),
        ("opaque/lower", "lower"),
        ("opaque/sub/deep", "deep"),
        ("gone-dir/x/y", "y"),
        ("becomes-dir", "file"),
    ] {
        std::fs::write(base.join(f), body).unwrap();
    }
    let base_tar = d.join("base.tar");
    let st = Command::new("tar")
        .args(["--format=posix", "--numeric-owner", "-cf"])
        .arg(&base_tar)
        .arg("-C")
        .arg(&base)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    // The change: Python's tarfile, with whiteouts, an opaque folder, a hard link, a file
    // become a folder, and a path written twice.
    let script = r#"
import tarfile, io
t = tarfile.open('change.tar', 'w', format=tarfile.PAX_FORMAT)
def add(name, data=b'', **kw):
    ti = tarfile.TarInfo(name)
    ti.mtime = 1700000000
    for k, v in kw.items(): setattr(ti, k, v)
    if ti.type == tarfile.REGTYPE: ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
add('etc/.wh.passwd')
add('.wh.gone-dir')
add('opaque', type=tarfile.DIRTYPE, mode=0o755)
add('opaque/.wh..wh..opq')
add('opaque/new', b'new')
add('usr/lib/libx.so', b'x2 first')
add('usr/lib/libx.so', b'x2')
add('usr/lib/libx.so.2', type=tarfile.LNKTYPE, linkname='usr/lib/libx.so')
add('becomes-dir', type=tarfile.DIRTYPE, mode=0o750)
add('becomes-dir/inside', b'in', mode=0o600, uid=1000, gid=1000)
t.close()
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tars = [
        std::fs::read(&base_tar).unwrap(),
        std::fs::read(d.join("change.tar")).unwrap(),
    ];
    let layout = layout_of(d, "mixed", &tars);
    run("umoci", &["unpack", "--image", "mixed:v1", "want"], d);
    let s = d.join("s");
    ok(&s, &["init"]);
    ok(&s, &["load", layout.to_str().unwrap(), "--tag", "mixed:v1"]);
    ok(&s, &["export", "mixed:v1", d.join("got").to_str().unwrap()]);
    assert_eq!(tree(&d.join("want/rootfs")), tree(&d.join("got")));
    // Each layer's export against its parent is the tar it came from.
    let layers: Vec<String> = ok(&s, &["layers"])
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    let top = ok(&s, &["images", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&top).unwrap();
    let top = v[0]["layer"].as_str().unwrap().to_string();
    let bottom = layers.iter().find(|l| **l != top).unwrap().clone();
    let out = d.join("top.tar");
    ok(
        &s,
        &["export-tar", &top, "--parent", &bottom, "-o", out.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&out).unwrap() == tars[1],
        "the change comes back byte for byte"
    );
    let out = d.join("bottom.tar");
    ok(&s, &["export-tar", &bottom, "-o", out.to_str().unwrap()]);
    assert!(
        std::fs::read(&out).unwrap() == tars[0],
        "the base comes back byte for byte"
    );
}

#[test]
fn a_load_that_fails_midway_takes_back_what_it_applied_even_after_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let one = d.join("one");
    std::fs::create_dir_all(one.join("a")).unwrap();
    std::fs::write(one.join("a/x"), "x").unwrap();
    let tar = |dir: &Path, out: &Path| {
        let st = Command::new("tar")
            .arg("-cf")
            .arg(out)
            .arg("-C")
            .arg(dir)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read(out).unwrap()
    };
    let first = tar(&one, &d.join("one.tar"));
    std::fs::write(one.join("a/y"), "y").unwrap();
    let second = tar(&one, &d.join("two.tar"));
    let layout = layout_of(d, "broken", &[first, second.clone()]);
    // The second layer's blob is damaged: the first is applied, then taken back.
    let digest = write_blob(&d.join("scratch"), &second);
    let mut bad = second;
    bad[1030] ^= 0x55;
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), bad).unwrap();
    let store = lstore::Store::create(d.join("s"), lstore::Options::default()).unwrap();
    let err = lstore::load(&store, &layout, &lstore::LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("does not match its digest"), "{err}");
    store.commit().unwrap();
    assert!(store.layers().unwrap().is_empty(), "the first layer was taken back");
    assert!(store.images().unwrap().is_empty());
    // A tag taken by a layer's name fails the load the same way, before any image exists.
    let good = layout_of(d, "good", &[tar(&one, &d.join("three.tar"))]);
    let mut b = store.new_layer(None).unwrap();
    b.put("k", b"v").unwrap();
    b.finish(Some("taken")).unwrap();
    let opts = lstore::LoadOptions {
        tag: Some("taken"),
        platform: None,
    };
    let err = lstore::load(&store, &good, &opts).unwrap_err();
    assert!(err.to_string().contains("taken"), "{err}");
    store.commit().unwrap();
    assert_eq!(store.layers().unwrap().len(), 1, "only the layer named taken");
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn a_stored_layer_is_reused_only_when_the_archive_blob_really_is_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let s = d.join("s");
    ok(&s, &["init"]);
    let stored = handmade(d, "stored", &["linux/amd64"]);
    ok(&s, &["load", stored.dir.to_str().unwrap()]);
    // A gzip layer whose bytes are another tar, under a config claiming the stored layer's
    // diffID: the blob matches its descriptor, but not the diffID.
    let other = d.join("other-src");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("evil"), "not the stored layer").unwrap();
    let st = Command::new("tar")
        .arg("-czf")
        .arg(d.join("other.tgz"))
        .arg("-C")
        .arg(&other)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let gz = std::fs::read(d.join("other.tgz")).unwrap();
    let layout = layout_with(
        d,
        "liar",
        &[gz],
        std::slice::from_ref(&stored.layer),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    fails(&s, &["load", layout.to_str().unwrap()], "but the config says");
    assert_eq!(ok(&s, &["images"]).lines().count(), 1);
}
