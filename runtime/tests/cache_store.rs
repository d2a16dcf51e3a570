//! The executable cache on disk: round trips, corruption handling, concurrency, list/clear.

use std::path::Path;
use std::sync::Arc;

use vidlower_runtime::cache::{CacheKey, CorruptReason, EntryMeta, ExecutableCache, Lookup};

fn key(n: usize) -> CacheKey {
    CacheKey::new(
        &format!("module {n}"),
        b"opts",
        "cpu",
        "0.81",
        (0, 81),
        "cpu",
        1,
        "",
    )
}

fn meta(label: &str) -> EntryMeta {
    EntryMeta {
        platform: "cpu".into(),
        label: label.into(),
        hlo_text_len: 1234,
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn open() -> (tempfile::TempDir, ExecutableCache) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = ExecutableCache::open(tmp.path().join("executables")).unwrap();
    (tmp, cache)
}

/// Names of the files in the cache dir.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn put_then_get_round_trips() {
    let (_tmp, cache) = open();
    let bytes = payload(100_000, 7);
    let path = cache
        .put(&key(1), &bytes, &meta("wan.transformer"))
        .unwrap();
    assert_eq!(path, cache.entry_path(&key(1)));
    assert_eq!(cache.get(&key(1)).unwrap(), Lookup::Hit(bytes));
    // An empty executable is still an entry.
    cache.put(&key(2), &[], &meta("empty")).unwrap();
    assert_eq!(cache.get(&key(2)).unwrap(), Lookup::Hit(vec![]));
}

#[test]
fn absent_key_is_a_miss() {
    let (_tmp, cache) = open();
    assert_eq!(cache.get(&key(1)).unwrap(), Lookup::Miss);
    cache.put(&key(1), b"x", &meta("a")).unwrap();
    assert_eq!(cache.get(&key(2)).unwrap(), Lookup::Miss);
}

#[test]
fn put_replaces_an_existing_entry() {
    let (_tmp, cache) = open();
    cache.put(&key(1), b"old", &meta("a")).unwrap();
    cache.put(&key(1), b"new", &meta("b")).unwrap();
    assert_eq!(cache.get(&key(1)).unwrap(), Lookup::Hit(b"new".to_vec()));
    assert_eq!(files(cache.dir()).len(), 1);
}

#[test]
fn open_creates_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/c");
    let cache = ExecutableCache::open(&dir).unwrap();
    assert!(dir.is_dir());
    assert_eq!(cache.dir(), dir);
}

/// Damages a valid entry with `damage`, then checks `get` reports `expected`, deletes the file, and
/// that the key then misses and can be stored again.
fn assert_corruption(
    damage: impl FnOnce(&ExecutableCache, &Path),
    expected: impl Fn(&CorruptReason) -> bool,
) {
    let (_tmp, cache) = open();
    let k = key(1);
    let path = cache.put(&k, &payload(4096, 3), &meta("victim")).unwrap();
    damage(&cache, &path);
    match cache.get(&k).unwrap() {
        Lookup::Corrupt { reason } => assert!(expected(&reason), "unexpected reason: {reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!path.exists(), "corrupt entry was not deleted");
    assert_eq!(cache.get(&k).unwrap(), Lookup::Miss);
    cache.put(&k, b"recompiled", &meta("victim")).unwrap();
    assert_eq!(cache.get(&k).unwrap(), Lookup::Hit(b"recompiled".to_vec()));
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_payload_is_corrupt() {
    assert_corruption(
        |_, p| rewrite(p, |b| b.truncate(b.len() - 100)),
        |r| matches!(r, CorruptReason::Truncated { expected, actual } if expected - actual == 100),
    );
}

#[test]
fn truncated_header_is_corrupt() {
    assert_corruption(
        |_, p| rewrite(p, |b| b.truncate(20)),
        |r| matches!(r, CorruptReason::Truncated { .. }),
    );
    assert_corruption(
        |_, p| rewrite(p, |b| b.clear()),
        |r| matches!(r, CorruptReason::Truncated { actual: 0, .. }),
    );
}

#[test]
fn trailing_bytes_are_corrupt() {
    assert_corruption(
        |_, p| rewrite(p, |b| b.extend_from_slice(b"junk")),
        |r| matches!(r, CorruptReason::TrailingBytes { .. }),
    );
}

#[test]
fn bad_magic_is_corrupt() {
    assert_corruption(
        |_, p| rewrite(p, |b| b[0..4].copy_from_slice(b"ELF\x7f")),
        |r| matches!(r, CorruptReason::BadMagic(m) if m == b"ELF\x7f"),
    );
}

#[test]
fn unknown_format_version_is_corrupt() {
    assert_corruption(
        |_, p| rewrite(p, |b| b[4] = 99),
        |r| matches!(r, CorruptReason::UnsupportedVersion(99)),
    );
}

#[test]
fn payload_bit_flip_is_a_checksum_mismatch() {
    assert_corruption(
        |_, p| {
            rewrite(p, |b| {
                let last = b.len() - 1;
                b[last] ^= 0x01;
            })
        },
        |r| *r == CorruptReason::ChecksumMismatch,
    );
}

#[test]
fn huge_metadata_length_is_corrupt_without_allocating_it() {
    assert_corruption(
        |_, p| rewrite(p, |b| b[48..52].copy_from_slice(&u32::MAX.to_le_bytes())),
        |r| matches!(r, CorruptReason::BadMetadata(_)),
    );
}

#[test]
fn huge_payload_length_is_corrupt_without_allocating_it() {
    assert_corruption(
        |_, p| {
            rewrite(p, |b| {
                b[8..16].copy_from_slice(&(u64::MAX - 10).to_le_bytes())
            })
        },
        |r| {
            matches!(
                r,
                CorruptReason::BadMetadata(_) | CorruptReason::Truncated { .. }
            )
        },
    );
}

#[test]
fn entry_filed_under_another_key_is_corrupt() {
    assert_corruption(
        |cache, p| {
            // Put key 2's valid entry where key 1's should be.
            let other = cache.put(&key(2), b"other module", &meta("other")).unwrap();
            std::fs::rename(other, p).unwrap();
        },
        |r| matches!(r, CorruptReason::KeyMismatch { found } if found == key(2).as_str()),
    );
}

#[test]
fn unreadable_entry_is_corrupt() {
    // A directory under the entry's name: opens, but cannot be read as a file.
    assert_corruption(
        |_, p| {
            std::fs::remove_file(p).unwrap();
            std::fs::create_dir(p).unwrap();
        },
        |r| matches!(r, CorruptReason::Unreadable(_)),
    );
}

#[test]
fn no_damage_ever_yields_other_bytes() {
    // Every truncation and every single-byte change of a small entry: `get` never panics and never
    // returns bytes other than the ones stored. (A change inside ls-only metadata such as the created
    // time may still verify: the payload checksum is what guards the plugin.)
    let (_tmp, cache) = open();
    let k = key(1);
    let original = payload(64, 9);
    let path = cache.put(&k, &original, &meta("fuzz")).unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = good.clone();
            b[i] ^= flip;
            damaged.push(b);
        }
    }
    let mut corrupt = 0;
    for bytes in damaged {
        std::fs::write(&path, &bytes).unwrap();
        match cache.get(&k).unwrap() {
            Lookup::Hit(got) => assert_eq!(got, original),
            Lookup::Corrupt { .. } => corrupt += 1,
            Lookup::Miss => panic!("the file was there"),
        }
    }
    assert!(
        corrupt > good.len(),
        "most damage must be caught, caught {corrupt}"
    );
}

#[test]
fn concurrent_writers_and_readers_of_one_key() {
    let (_tmp, cache) = open();
    let cache = Arc::new(cache);
    let k = key(1);
    const WRITERS: u8 = 6;
    const LEN: usize = 300_000;
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (cache, k) = (cache.clone(), k.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    cache.put(&k, &payload(LEN, w), &meta("racy")).unwrap();
                }
            })
        })
        .chain((0..3).map(|_| {
            let (cache, k) = (cache.clone(), k.clone());
            std::thread::spawn(move || {
                for _ in 0..60 {
                    match cache.get(&k).unwrap() {
                        Lookup::Hit(bytes) => {
                            assert!((0..WRITERS).any(|w| bytes == payload(LEN, w)))
                        }
                        Lookup::Miss => {}
                        Lookup::Corrupt { reason } => {
                            panic!("a reader saw a partial entry: {reason}")
                        }
                    }
                }
            })
        }))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let Lookup::Hit(bytes) = cache.get(&k).unwrap() else {
        panic!("no entry after the writers")
    };
    assert!((0..WRITERS).any(|w| bytes == payload(LEN, w)));
    assert_eq!(
        files(cache.dir()),
        vec![format!("{k}.vlxc")],
        "temp files left behind"
    );
}

#[test]
fn concurrent_processes_writing_one_key() {
    // Separate `ExecutableCache` values over one dir stand for separate processes: nothing is shared
    // but the filesystem.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x");
    let handles: Vec<_> = (0..4u8)
        .map(|w| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let cache = ExecutableCache::open(&dir).unwrap();
                for _ in 0..10 {
                    cache.put(&key(7), &payload(50_000, w), &meta("p")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let cache = ExecutableCache::open(&dir).unwrap();
    assert!(
        matches!(cache.get(&key(7)).unwrap(), Lookup::Hit(b) if (0..4).any(|w| b == payload(50_000, w)))
    );
}

#[test]
fn list_shows_metadata_and_flags_bad_headers() {
    let (_tmp, cache) = open();
    assert!(cache.list().unwrap().is_empty());
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    cache
        .put(&key(1), &payload(1000, 1), &meta("stage1.text_encoder"))
        .unwrap();
    cache
        .put(
            &key(2),
            &payload(2000, 2),
            &EntryMeta {
                platform: "cuda".into(),
                label: "stage2".into(),
                hlo_text_len: 9,
            },
        )
        .unwrap();
    let bad = cache.put(&key(3), b"x", &meta("bad")).unwrap();
    rewrite(&bad, |b| b[0] = b'Z');
    // Files that are not entries are not listed (and not cleared).
    std::fs::write(cache.dir().join("README"), b"not ours").unwrap();
    std::fs::write(cache.dir().join("deadbeef.vlxc"), b"bad name").unwrap();

    let list = cache.list().unwrap();
    assert_eq!(list.len(), 3);
    let one = list.iter().find(|e| e.key == key(1)).unwrap();
    assert_eq!(one.meta, meta("stage1.text_encoder"));
    assert_eq!(one.problem, None);
    assert!(one.size > 1000);
    assert!(one.created.unwrap() >= before);
    let two = list.iter().find(|e| e.key == key(2)).unwrap();
    assert_eq!(
        (
            two.meta.platform.as_str(),
            two.meta.label.as_str(),
            two.meta.hlo_text_len
        ),
        ("cuda", "stage2", 9)
    );
    let three = list.iter().find(|e| e.key == key(3)).unwrap();
    assert!(matches!(three.problem, Some(CorruptReason::BadMagic(_))));
    assert_eq!(three.created, None);

    let sizes: u64 = list.iter().map(|e| e.size).sum();
    assert_eq!(cache.total_size().unwrap(), sizes);
}

#[test]
fn remove_and_clear() {
    let (_tmp, cache) = open();
    for n in 0..3 {
        cache
            .put(&key(n), &payload(500, n as u8), &meta("m"))
            .unwrap();
    }
    // A temp file left by an interrupted write.
    std::fs::write(cache.dir().join(".tmp-abandoned"), [0u8; 10]).unwrap();
    std::fs::write(cache.dir().join("README"), b"not ours").unwrap();

    assert!(cache.remove(&key(0)).unwrap());
    assert!(!cache.remove(&key(0)).unwrap());
    assert_eq!(cache.get(&key(0)).unwrap(), Lookup::Miss);

    let total = cache.total_size().unwrap();
    let (count, bytes) = cache.clear().unwrap();
    assert_eq!(count, 2);
    assert_eq!(bytes, total);
    assert!(cache.list().unwrap().is_empty());
    assert_eq!(cache.total_size().unwrap(), 0);
    assert_eq!(files(cache.dir()), vec!["README".to_string()]);
    assert_eq!(cache.clear().unwrap(), (0, 0));
}

#[test]
fn default_dir_is_under_the_cache_root() {
    let dir = ExecutableCache::default_dir().unwrap();
    assert!(dir.ends_with("executables"));
    assert_eq!(
        dir.parent(),
        vidlower_runtime::cache::cache_root().as_deref()
    );
}
