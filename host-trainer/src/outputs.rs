//! Where commands write their results: every output is checked before the work starts,
//! and a result that cannot be saved at the end is saved somewhere else, never lost.
//!
//! - [`resolve`]: an `--out` that is a directory (an existing one, or a path ending in
//!   `/`) means "put the file in it", under the name the command would give it by default
//!   (`runs/` + `small.params` -> `DIR/small.params`).
//! - [`prepare`]: before any work, the output's directory is created if missing (or
//!   refused at once with the reason), a file is written in it and removed to prove it
//!   writable, and a directory standing where the file should go is refused.
//! - [`write_or_rescue`]: the atomic write of the result; if it fails (disk full,
//!   permissions changed during the run), the same bytes go to a fallback file (the
//!   current directory, then the system's temporary directory) and the error names it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Result};

use crate::checkpoint::Checkpoint;

/// `out` as a file path: if `out` is a directory (it exists as one, or it is written with
/// a trailing `/`), the file `default_name` inside it.
pub fn resolve(out: &Path, default_name: &str) -> PathBuf {
    let text = out.as_os_str().to_string_lossy();
    if out.is_dir() || text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
        out.join(default_name)
    } else {
        out.to_path_buf()
    }
}

/// What [`prepare`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The directory did not exist and was created.
    pub created_dir: Option<PathBuf>,
    /// A file already stands at the path (it will be replaced).
    pub exists: bool,
}

/// The directory a file path lives in (`.` for a bare file name).
pub fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks, before any work, that `path` can be written: its directory exists (created
/// if missing) and takes a new file, and no directory stands at `path` itself. `what`
/// says what the file is, for the error (`"parameters"`, `"checkpoint"` ...).
pub fn prepare(path: &Path, what: &str) -> Result<Prepared> {
    if path.is_dir() {
        bail!(
            "{}: is a directory, cannot write the {what} there (give a file name, or a directory with a trailing /)",
            path.display()
        );
    }
    let dir = dir_of(path);
    let mut created_dir = None;
    if !dir.exists() {
        if let Err(e) = fs::create_dir_all(dir) {
            bail!(
                "{}: cannot create the directory for the {what}: {e} (choose another --out)",
                dir.display()
            );
        }
        created_dir = Some(dir.to_path_buf());
    } else if !dir.is_dir() {
        bail!(
            "{}: is not a directory, cannot write the {what} in it (choose another --out)",
            dir.display()
        );
    }
    probe(dir).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot write the {what} in this directory: {e} (choose another --out, or make it writable)",
            dir.display()
        )
    })?;
    Ok(Prepared {
        created_dir,
        exists: path.exists(),
    })
}

/// Creates, writes, syncs and removes a small file in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        ".microconv-write-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let p = dir.join(name);
    let r = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(b"microconv")?;
            f.sync_all()
        });
    let _ = fs::remove_file(&p);
    r
}

/// Where [`write_or_rescue`] puts a result that cannot be written to `path`: a file of
/// the same name (with `.rescued-<pid>` before the extension) in the current directory,
/// then in the system's temporary directory.
pub fn rescue_candidates(path: &Path) -> Vec<PathBuf> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "result".into());
    let name = match path.extension() {
        Some(ext) => format!(
            "{stem}.rescued-{}.{}",
            std::process::id(),
            ext.to_string_lossy()
        ),
        None => format!("{stem}.rescued-{}", std::process::id()),
    };
    let mut v = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        v.push(cwd.join(&name));
    }
    v.push(std::env::temp_dir().join(&name));
    v
}

/// Writes `bytes` to `path` atomically ([`crate::bytes::write_atomic`]); if that
/// fails, writes them to the first of [`rescue_candidates`] that takes them and returns
/// an error naming both, so that the result is never left only in a temporary file.
pub fn write_or_rescue(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    let Err(e) = crate::bytes::write_atomic(path, bytes) else {
        return Ok(());
    };
    let mut tried = Vec::new();
    for c in rescue_candidates(path) {
        if c == path {
            continue;
        }
        match crate::bytes::write_atomic(&c, bytes) {
            Ok(()) => bail!(
                "cannot save the {what} to {}: {e:#}; they are saved in {} instead (move that file where you want it)",
                path.display(),
                c.display()
            ),
            Err(e2) => tried.push(format!("{}: {e2:#}", c.display())),
        }
    }
    bail!(
        "cannot save the {what} to {}: {e:#}; no fallback could be written either ({})",
        path.display(),
        tried.join("; ")
    )
}

/// The files a `train` run writes.
pub struct TrainFiles {
    /// The parameters; the checkpoint, metrics and curves are beside them.
    pub params: PathBuf,
    /// A resumed run moved with `--out` takes its metrics rows from here.
    pub metrics_from: Option<PathBuf>,
}

impl TrainFiles {
    /// The run's file with extension `ext` beside the parameters (`ckpt`,
    /// `metrics.csv`, `curves` ...).
    pub fn beside(&self, ext: &str) -> PathBuf {
        self.params.with_extension(ext)
    }
}

/// Where `train` writes, every file checked before the training starts: `--out` (a
/// file, or a directory for `<arch>.params` in it) or `runs/<arch>.params`; a resumed
/// run writes where the run it continues wrote, unless `--out` moves it. Says which
/// directories it created and which files of an earlier run it will replace.
pub fn train_files(
    resumed: Option<(&Path, &Checkpoint)>,
    out: Option<PathBuf>,
    arch: &str,
    no_plots: bool,
) -> Result<TrainFiles> {
    let default_name = format!("{arch}.params");
    let (out, metrics_from) = match (resumed, out) {
        (_, Some(o)) => {
            let out = resolve(&o, &default_name);
            // `--out` with `--resume` moves the run: the metrics rows so far come along.
            let from = resumed.map(|(p, _)| p.with_extension("metrics.csv"));
            (out, from)
        }
        (Some((p, c)), None) => (resumed_out(c, p), None),
        (None, None) => (PathBuf::from("runs").join(&default_name), None),
    };
    let run = TrainFiles {
        params: out,
        metrics_from,
    };
    // Every file the run writes is checked now, not after the training.
    let mut files = vec![
        (run.params.clone(), "parameters"),
        (run.beside("ckpt"), "checkpoint"),
        (run.beside("metrics.csv"), "metrics"),
    ];
    if !no_plots {
        files.push((run.beside("curves.png"), "training curves"));
        files.push((run.beside("curves.svg"), "training curves"));
    }
    let mut replaced = Vec::new();
    for (path, what) in &files {
        let p = prepare(path, what)?;
        if let Some(d) = p.created_dir {
            println!("created directory {}", d.display());
        }
        if p.exists {
            replaced.push(path.display().to_string());
        }
    }
    let continues_here = resumed.is_some_and(|(r, _)| same_file(r, &run.beside("ckpt")));
    if !replaced.is_empty() && !continues_here {
        println!(
            "note: replacing the files of an earlier run: {} (give --out to keep them)",
            replaced.join(", ")
        );
    }
    Ok(run)
}

/// Whether `a` and `b` name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Where a resumed run without `--out` writes: where the run it continues wrote (the
/// parameters' path its checkpoint records), or, for a checkpoint that was moved or
/// written by an earlier build, beside the checkpoint itself.
fn resumed_out(c: &Checkpoint, ckpt: &Path) -> PathBuf {
    if let Some(rec) = &c.header.out {
        if same_file(&rec.with_extension("ckpt"), ckpt) {
            return rec.clone();
        }
        let here = ckpt.with_extension("params");
        println!(
            "note: the checkpoint was written for {}; it has moved, so the run continues beside it ({})",
            rec.display(),
            here.display()
        );
        return here;
    }
    ckpt.with_extension("params")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mc-outputs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_directory_means_a_file_inside_it() {
        let d = tmp("resolve");
        fs::create_dir_all(&d).unwrap();
        assert_eq!(resolve(&d, "small.params"), d.join("small.params"));
        let slash = PathBuf::from(format!("{}/new/", d.display()));
        assert_eq!(resolve(&slash, "small.params"), slash.join("small.params"));
        assert_eq!(
            resolve(&d.join("x.params"), "small.params"),
            d.join("x.params")
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn prepare_creates_missing_directories_and_refuses_directories() {
        let d = tmp("prepare");
        let p = d.join("a/b/run.params");
        let got = prepare(&p, "parameters").unwrap();
        assert_eq!(got.created_dir.as_deref(), Some(d.join("a/b").as_path()));
        assert!(!got.exists);
        assert_eq!(
            fs::read_dir(d.join("a/b")).unwrap().count(),
            0,
            "probe removed"
        );
        fs::create_dir_all(d.join("a/b/run.ckpt")).unwrap();
        let e = prepare(&d.join("a/b/run.ckpt"), "checkpoint").unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        fs::write(d.join("file"), b"x").unwrap();
        let e = prepare(&d.join("file/run.params"), "parameters").unwrap_err();
        assert!(e.to_string().contains("file"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_failed_write_is_rescued() {
        let d = tmp("rescue");
        fs::create_dir_all(&d).unwrap();
        // A directory where the temporary file should go makes the atomic write fail.
        let p = d.join("run.params");
        fs::create_dir_all(d.join("run.params.tmp")).unwrap();
        let e = write_or_rescue(&p, b"result", "parameters")
            .unwrap_err()
            .to_string();
        let rescued = rescue_candidates(&p)
            .into_iter()
            .find(|c| c.exists())
            .unwrap();
        assert!(e.contains(&rescued.display().to_string()), "{e}");
        assert_eq!(fs::read(&rescued).unwrap(), b"result");
        fs::remove_file(rescued).unwrap();
        fs::remove_dir_all(d).unwrap();
    }
}
