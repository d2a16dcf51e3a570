//! Plugin discovery over fake site-packages layouts: no Python, no environment variables.

use std::path::{Path, PathBuf};

use vidlower_runtime::plugin::{
    Candidate, Discovery, KnownPlugin, PluginError, PluginKind, PluginSpec, Source,
    DEFAULT_CPU_PACKAGE, KNOWN_PLUGINS,
};

const XLA_CPU: &str = "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so";
const LAMMPS_CPU: &str = "lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so";
const CUDA13: &str = "jax_plugins/xla_cuda13/xla_cuda_plugin.so";
const CUDA12: &str = "jax_plugins/xla_cuda12/xla_cuda_plugin.so";
const TPU: &str = "libtpu/libtpu.so";

fn touch(dir: &Path, rel: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"\x7fELF fake plugin").unwrap();
    path
}

fn site(root: &Path, name: &str, plugins: &[&str]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for rel in plugins {
        touch(&dir, rel);
    }
    dir
}

/// `<root>/plugins/<kind>/<package>/<rel_path>`, as the installer lays it out.
fn cached(cache_root: &Path, package: &str) -> PathBuf {
    let known = KnownPlugin::by_package(package).unwrap();
    touch(
        &cache_root
            .join("plugins")
            .join(known.kind.name())
            .join(package),
        known.rel_path,
    )
}

fn discovery(sites: Vec<PathBuf>, cache_root: Option<PathBuf>) -> Discovery {
    Discovery {
        sites,
        cache_root,
        // Installing must never happen in these tests: a python that does not exist proves it.
        python: "/nonexistent/python3".into(),
        ..Discovery::default()
    }
}

#[test]
fn spec_parses_kinds_paths_and_rejects_empty() {
    let parse = |s: &str| s.parse::<PluginSpec>();
    assert_eq!(parse("cpu").unwrap(), PluginSpec::Kind(PluginKind::Cpu));
    assert_eq!(parse("CUDA").unwrap(), PluginSpec::Kind(PluginKind::Cuda));
    assert_eq!(parse("gpu").unwrap(), PluginSpec::Kind(PluginKind::Cuda));
    assert_eq!(parse(" tpu ").unwrap(), PluginSpec::Kind(PluginKind::Tpu));
    assert_eq!(parse("auto").unwrap(), PluginSpec::Default);
    assert_eq!(parse("default").unwrap(), PluginSpec::Default);
    assert_eq!(
        parse("/opt/x/libtpu.so").unwrap(),
        PluginSpec::Path("/opt/x/libtpu.so".into())
    );
    assert_eq!(parse("./cpu").unwrap(), PluginSpec::Path("./cpu".into()));
    assert!(matches!(parse(""), Err(PluginError::EmptySpec)));
    assert!(matches!(parse("   "), Err(PluginError::EmptySpec)));
    for spec in ["cpu", "cuda", "tpu", "default", "/a/b.so"] {
        assert_eq!(parse(spec).unwrap().to_string(), spec);
    }
    assert_eq!(PluginSpec::default(), PluginSpec::Default);
}

#[test]
fn kind_is_guessed_from_known_layouts_and_names() {
    let guess = |p: &str| PluginKind::guess_from_path(Path::new(p));
    assert_eq!(
        guess(&format!("/x/site-packages/{XLA_CPU}")),
        Some(PluginKind::Cpu)
    );
    assert_eq!(guess(&format!("/x/{LAMMPS_CPU}")), Some(PluginKind::Cpu));
    assert_eq!(guess(&format!("/x/{CUDA12}")), Some(PluginKind::Cuda));
    assert_eq!(guess("/opt/libtpu.so"), Some(PluginKind::Tpu));
    assert_eq!(guess("/opt/my_gpu_plugin.so"), Some(PluginKind::Cuda));
    assert_eq!(
        guess("/opt/pjrt_c_api_cpu_plugin.so"),
        Some(PluginKind::Cpu)
    );
    assert_eq!(guess("/opt/plugin.so"), None);
    assert!(KNOWN_PLUGINS
        .iter()
        .any(|k| k.package == DEFAULT_CPU_PACKAGE && k.kind == PluginKind::Cpu));
}

#[test]
fn candidates_list_every_plugin_with_source_package_and_api() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU, CUDA13]);
    let b = site(tmp.path(), "b", &[LAMMPS_CPU, CUDA12, TPU]);
    let cache = tmp.path().join("cache");
    let cached_xla = cached(&cache, "xla-cpu-pjrt");

    let found = discovery(vec![a.clone(), b.clone()], Some(cache)).candidates();
    let summary: Vec<(Option<PluginKind>, Option<&str>, &Source)> = found
        .iter()
        .map(|c| (c.kind, c.package, &c.source))
        .collect();
    let pip_a = Source::Pip { site: a.clone() };
    let pip_b = Source::Pip { site: b.clone() };
    assert_eq!(
        summary,
        vec![
            (Some(PluginKind::Cpu), Some("xla-cpu-pjrt"), &pip_a),
            (Some(PluginKind::Cuda), Some("jax-cuda13-pjrt"), &pip_a),
            (Some(PluginKind::Cpu), Some("lammps-jax-pjrt-cpu"), &pip_b),
            (Some(PluginKind::Cuda), Some("jax-cuda12-pjrt"), &pip_b),
            (Some(PluginKind::Tpu), Some("libtpu"), &pip_b),
            (Some(PluginKind::Cpu), Some("xla-cpu-pjrt"), &Source::Cache),
        ]
    );
    assert_eq!(found[0].path, a.join(XLA_CPU));
    assert_eq!(found[0].api_version, Some((0, 81)));
    assert_eq!(found[2].api_version, Some((0, 115)));
    assert_eq!(found[4].api_version, None);
    assert_eq!(found[5].path, cached_xla);
}

#[test]
fn repeated_and_symlinked_site_dirs_list_a_plugin_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU]);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let found = discovery(vec![a.clone(), link, a.clone()], None).candidates();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source, Source::Pip { site: a });
}

#[test]
fn nothing_found_is_empty_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = site(tmp.path(), "empty", &[]);
    let d = discovery(
        vec![empty, tmp.path().join("missing")],
        Some(tmp.path().join("nocache")),
    );
    assert!(d.candidates().is_empty());
}

#[test]
fn explicit_path_wins_over_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU]);
    let env = touch(tmp.path(), "env/libtpu.so");
    let mine = touch(tmp.path(), "mine/plugin.so");
    let d = Discovery {
        env: Some(env),
        ..discovery(vec![a], None)
    };
    let c = d.resolve(&PluginSpec::Path(mine.clone())).unwrap();
    assert_eq!(c, Candidate::from_path(mine, Source::Explicit));
    assert_eq!(c.kind, None);
    assert_eq!(c.package, None);
}

#[test]
fn explicit_missing_path_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU]);
    let missing = tmp.path().join("nope/xla_cpu_pjrt.so");
    let err = discovery(vec![a], None)
        .resolve(&PluginSpec::Path(missing.clone()))
        .unwrap_err();
    assert!(matches!(&err, PluginError::ExplicitPathMissing { path } if *path == missing));
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("--plugin"), "{msg}");

    // A directory is not a plugin either.
    let err = discovery(vec![], None)
        .resolve(&PluginSpec::Path(tmp.path().to_path_buf()))
        .unwrap_err();
    assert!(matches!(err, PluginError::ExplicitPathMissing { .. }));
}

#[test]
fn env_wins_over_pip_and_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU]);
    let cache = tmp.path().join("cache");
    cached(&cache, "xla-cpu-pjrt");
    let env = touch(tmp.path(), "env/custom.so");
    let d = Discovery {
        env: Some(env.clone()),
        ..discovery(vec![a], Some(cache))
    };
    let c = d.resolve(&PluginSpec::Default).unwrap();
    assert_eq!((c.path, c.source), (env.clone(), Source::Env));
    assert_eq!(d.candidates()[0].source, Source::Env);
    assert_eq!(d.candidates().len(), 3);
}

#[test]
fn env_pointing_nowhere_is_an_error_not_a_silent_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU]);
    let env = tmp.path().join("gone/xla_cpu_plugin.so");
    let d = Discovery {
        env: Some(env.clone()),
        ..discovery(vec![a], None)
    };
    let err = d.resolve(&PluginSpec::Default).unwrap_err();
    assert!(matches!(&err, PluginError::EnvPathMissing { path } if *path == env));
    assert!(err.to_string().contains("VIDLOWER_PJRT_PLUGIN"), "{err}");
    // Also for `--plugin cpu`, since the env file's name says it is a CPU plugin.
    assert!(matches!(
        d.resolve(&PluginSpec::Kind(PluginKind::Cpu)),
        Err(PluginError::EnvPathMissing { .. })
    ));
    // And the listing just leaves it out.
    assert!(d.candidates().iter().all(|c| c.source != Source::Env));
}

#[test]
fn kind_spec_uses_env_only_when_env_is_that_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU, CUDA13]);
    let env_cpu = touch(tmp.path(), "env/pjrt_c_api_cpu_plugin.so");
    let d = Discovery {
        env: Some(env_cpu.clone()),
        ..discovery(vec![a.clone()], None)
    };
    assert_eq!(
        d.resolve(&PluginSpec::Kind(PluginKind::Cpu)).unwrap().path,
        env_cpu
    );
    let cuda = d.resolve(&PluginSpec::Kind(PluginKind::Cuda)).unwrap();
    assert_eq!(
        (cuda.path, cuda.source),
        (a.join(CUDA13), Source::Pip { site: a })
    );
}

#[test]
fn pip_wins_over_cache_for_the_same_package() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    cached(&cache, "xla-cpu-pjrt");
    let a = site(tmp.path(), "a", &[XLA_CPU]);
    let c = discovery(vec![a.clone()], Some(cache))
        .resolve(&PluginSpec::Default)
        .unwrap();
    assert_eq!(c.source, Source::Pip { site: a });
}

#[test]
fn cache_is_used_when_pip_has_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let path = cached(&cache, "lammps-jax-pjrt-cpu");
    let empty = site(tmp.path(), "empty", &[]);
    let c = discovery(vec![empty], Some(cache))
        .resolve(&PluginSpec::Kind(PluginKind::Cpu))
        .unwrap();
    assert_eq!(
        (c.path, c.source, c.package),
        (path, Source::Cache, Some("lammps-jax-pjrt-cpu"))
    );
}

#[test]
fn default_cpu_package_is_preferred_wherever_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let other = KNOWN_PLUGINS
        .iter()
        .find(|k| k.kind == PluginKind::Cpu && k.package != DEFAULT_CPU_PACKAGE)
        .unwrap();
    let preferred = KnownPlugin::by_package(DEFAULT_CPU_PACKAGE).unwrap();
    // The other package comes first in site order, the preferred one only in a later site.
    let first = site(tmp.path(), "first", &[other.rel_path]);
    let later = site(tmp.path(), "later", &[preferred.rel_path]);
    let c = discovery(vec![first.clone(), later], None)
        .resolve(&PluginSpec::Default)
        .unwrap();
    assert_eq!(c.package, Some(DEFAULT_CPU_PACKAGE));
    // Without the preferred package the other one is used.
    let c = discovery(vec![first], None)
        .resolve(&PluginSpec::Default)
        .unwrap();
    assert_eq!(c.package, Some(other.package));
}

#[test]
fn default_prefers_a_present_accelerator_and_falls_back_to_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU, CUDA12, CUDA13, TPU]);
    let with = |accelerators: Vec<PluginKind>| {
        Discovery {
            accelerators,
            ..discovery(vec![a.clone()], None)
        }
        .resolve(&PluginSpec::Default)
        .unwrap()
        .package
    };
    // A CUDA or TPU plugin installed on a machine without the device would fail at client creation.
    assert_eq!(with(vec![]), Some("xla-cpu-pjrt"));
    assert_eq!(with(vec![PluginKind::Cuda]), Some("jax-cuda13-pjrt"));
    assert_eq!(with(vec![PluginKind::Tpu]), Some("libtpu"));

    let cpu_only = site(tmp.path(), "cpu_only", &[XLA_CPU]);
    let d = Discovery {
        accelerators: vec![PluginKind::Cuda],
        ..discovery(vec![cpu_only], None)
    };
    assert_eq!(
        d.resolve(&PluginSpec::Default).unwrap().kind,
        Some(PluginKind::Cpu)
    );
}

#[test]
fn missing_kind_error_says_what_to_install_and_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[XLA_CPU]);
    let cache = tmp.path().join("cache");
    let d = discovery(vec![a.clone()], Some(cache.clone()));
    let err = d.resolve(&PluginSpec::Kind(PluginKind::Tpu)).unwrap_err();
    assert!(matches!(
        err,
        PluginError::NotFound {
            kind: PluginKind::Tpu,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("pip install libtpu"), "{msg}");
    assert!(msg.contains(&a.display().to_string()), "{msg}");
    assert!(
        msg.contains(&cache.join("plugins").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("VIDLOWER_PJRT_PLUGIN"), "{msg}");

    let msg = d
        .resolve(&PluginSpec::Kind(PluginKind::Cuda))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("jax-cuda13-pjrt") && msg.contains("jax-cuda12-pjrt"),
        "{msg}"
    );
}

#[test]
fn resolve_or_install_never_installs_cuda_or_tpu() {
    let tmp = tempfile::tempdir().unwrap();
    let d = discovery(vec![], Some(tmp.path().join("cache")));
    for kind in [PluginKind::Cuda, PluginKind::Tpu] {
        // Had it tried pip, the nonexistent python would give PythonMissing instead.
        let err = d.resolve_or_install(&PluginSpec::Kind(kind)).unwrap_err();
        assert!(
            matches!(err, PluginError::NotFound { kind: k, .. } if k == kind),
            "{err}"
        );
    }
    assert!(!tmp.path().join("cache/plugins").exists());
}

#[test]
fn resolve_or_install_returns_a_found_plugin_without_installing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = site(tmp.path(), "a", &[LAMMPS_CPU]);
    let d = discovery(vec![a.clone()], Some(tmp.path().join("cache")));
    let c = d.resolve_or_install(&PluginSpec::Default).unwrap();
    assert_eq!(c.path, a.join(LAMMPS_CPU));
}

#[test]
fn resolve_or_install_without_a_cache_dir_says_so() {
    let d = discovery(vec![], None);
    assert!(matches!(
        d.resolve_or_install(&PluginSpec::Default),
        Err(PluginError::NoCacheDir)
    ));
}

#[test]
fn python_site_dirs_are_existing_directories() {
    let dirs = vidlower_runtime::plugin::python_site_dirs();
    assert!(
        dirs.iter().all(|d| d.is_dir() && d.is_absolute()),
        "{dirs:?}"
    );
    let have_python = std::process::Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success());
    if have_python {
        assert!(!dirs.is_empty(), "python3 runs but no site dir was found");
    }
}
