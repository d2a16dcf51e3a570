//! Installing a CPU plugin with pip: failure paths with fake pythons, and one real pip install.
#![cfg(unix)]

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vidlower_runtime::plugin::{
    install_plugin, pip_install_target, Discovery, KnownPlugin, PluginError, PluginKind,
    PluginSpec, Source, DEFAULT_CPU_PACKAGE,
};

/// A shell script standing in for `python3`.
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-python");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Writes what pip would: finds the value after `--target` and lays out the default CPU package.
const FAKE_PIP_OK: &str = r#"
while [ "$#" -gt 0 ]; do
  if [ "$1" = "--target" ]; then target="$2"; fi
  pkg="$1"
  shift
done
# Lay out whichever CPU package was asked for (the last argument).
case "$pkg" in
  lammps-jax-pjrt-cpu) mkdir -p "$target/lammps_jax_pjrt_cpu"; printf 'fake' > "$target/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so" ;;
  *) mkdir -p "$target/xla_plugins/xla_cpu_pjrt"; printf 'fake' > "$target/xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so" ;;
esac
"#;

/// Everything under `<root>/plugins/cpu`: the install must leave no partial dirs behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn pip_failure_reports_pips_last_lines_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let python = fake_python(
        tmp.path(),
        "i=1; while [ $i -le 40 ]; do echo \"pip line $i\"; i=$((i+1)); done; echo 'ERROR: no matching distribution' >&2; exit 3",
    );
    let cache = tmp.path().join("cache");
    let err = install_plugin(python.as_os_str(), &cache, "xla-cpu-pjrt").unwrap_err();
    let PluginError::PipFailed {
        ref package,
        ref tail,
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!(package, "xla-cpu-pjrt");
    assert!(tail.contains("ERROR: no matching distribution"), "{tail}");
    assert!(tail.contains("pip line 40"), "{tail}");
    assert!(
        !tail.contains("pip line 1\n"),
        "only the last lines: {tail}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("VIDLOWER_PJRT_PLUGIN") && msg.contains("pip install xla-cpu-pjrt"),
        "{msg}"
    );
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert_eq!(entries(&cache.join("plugins/cpu")), Vec::<String>::new());
}

#[test]
fn pip_success_without_the_library_is_incomplete_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let python = fake_python(tmp.path(), "exit 0");
    let cache = tmp.path().join("cache");
    let err = install_plugin(python.as_os_str(), &cache, "xla-cpu-pjrt").unwrap_err();
    assert!(
        matches!(err, PluginError::InstallIncomplete { expected, .. }
        if expected == "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so")
    );
    assert_eq!(entries(&cache.join("plugins/cpu")), Vec::<String>::new());
}

#[test]
fn missing_python_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = install_plugin(
        OsStr::new("/nonexistent/python3"),
        tmp.path(),
        "xla-cpu-pjrt",
    )
    .unwrap_err();
    assert!(matches!(err, PluginError::PythonMissing { .. }), "{err}");
    assert!(err.to_string().contains("VIDLOWER_PJRT_PLUGIN"), "{err}");
}

#[test]
fn unknown_package_is_refused_before_running_pip() {
    let tmp = tempfile::tempdir().unwrap();
    let err = install_plugin(
        OsStr::new("/nonexistent/python3"),
        tmp.path(),
        "not-a-plugin",
    )
    .unwrap_err();
    assert!(matches!(err, PluginError::UnknownPackage { .. }), "{err}");
    assert!(err.to_string().contains("xla-cpu-pjrt"), "{err}");
}

#[test]
fn install_renames_into_place_and_replaces_a_stale_target() {
    let tmp = tempfile::tempdir().unwrap();
    let python = fake_python(tmp.path(), FAKE_PIP_OK);
    let cache = tmp.path().join("cache");
    let known = KnownPlugin::by_package("xla-cpu-pjrt").unwrap();
    let target = pip_install_target(&cache, known);
    assert_eq!(target, cache.join("plugins/cpu/xla-cpu-pjrt"));
    // A leftover dir without the library, as a hand-made or damaged install would leave.
    std::fs::create_dir_all(target.join("junk")).unwrap();

    let c = install_plugin(python.as_os_str(), &cache, "xla-cpu-pjrt").unwrap();
    assert_eq!(c.path, target.join(known.rel_path));
    assert_eq!(
        (c.source, c.kind, c.package),
        (Source::Cache, Some(PluginKind::Cpu), Some("xla-cpu-pjrt"))
    );
    assert!(!target.join("junk").exists());
    assert_eq!(
        entries(&cache.join("plugins/cpu")),
        vec!["xla-cpu-pjrt".to_string()]
    );

    // Installed already: pip is not run again (this python would fail if it were).
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let failing = fake_python(&other, "exit 1");
    let again = install_plugin(failing.as_os_str(), &cache, "xla-cpu-pjrt").unwrap();
    assert_eq!(again.path, c.path);
}

#[test]
fn resolve_or_install_installs_the_default_cpu_package_once() {
    let tmp = tempfile::tempdir().unwrap();
    let python = fake_python(tmp.path(), FAKE_PIP_OK);
    let d = Discovery {
        cache_root: Some(tmp.path().join("cache")),
        python: python.into(),
        ..Discovery::default()
    };
    let c = d
        .resolve_or_install(&PluginSpec::Kind(PluginKind::Cpu))
        .unwrap();
    assert_eq!(
        (c.source, c.package),
        (Source::Cache, Some(DEFAULT_CPU_PACKAGE))
    );
    let found = Discovery {
        python: "/nonexistent/python3".into(),
        ..d
    }
    .resolve(&PluginSpec::Default)
    .unwrap();
    assert_eq!(found.path, c.path);
}

fn pip_available() -> bool {
    std::process::Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The real thing: pip fetches the default CPU package (from wherever pip is configured to look)
/// into a temp cache, and discovery finds an ELF shared library there.
#[test]
fn real_pip_installs_the_default_cpu_plugin_into_the_cache() {
    if !pip_available() {
        eprintln!("skipped: python3 -m pip is not available");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = Discovery {
        cache_root: Some(tmp.path().to_path_buf()),
        ..Discovery::default()
    };
    let c = d.resolve_or_install(&PluginSpec::Default).unwrap();
    assert_eq!(c.source, Source::Cache);
    let known = KnownPlugin::by_package(DEFAULT_CPU_PACKAGE).unwrap();
    assert_eq!(c.package, Some(DEFAULT_CPU_PACKAGE));
    assert_eq!(c.api_version, known.api_version);
    assert_eq!(c.path, tmp.path().join("plugins/cpu").join(DEFAULT_CPU_PACKAGE).join(known.rel_path));
    let head = std::fs::read(&c.path).unwrap();
    assert!(
        head.len() > 1 << 20,
        "a real plugin is megabytes, got {} bytes",
        head.len()
    );
    assert_eq!(&head[..4], b"\x7fELF");
    assert_eq!(
        entries(&tmp.path().join("plugins/cpu")),
        vec![DEFAULT_CPU_PACKAGE.to_string()]
    );

    let again = Discovery {
        python: "/nonexistent/python3".into(),
        ..d
    }
    .resolve(&PluginSpec::Kind(PluginKind::Cpu))
    .unwrap();
    assert_eq!(again.path, c.path);
}
