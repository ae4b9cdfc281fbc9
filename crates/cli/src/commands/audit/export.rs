//! `curfew audit export FILE`: every chain's records and heads as JSON Lines, with the file's
//! SHA-256 and the heads printed so an auditor can check the export later, offline.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use curfew_core::trail::ChainHead;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{chains, ExportLine};
use crate::cli::{GlobalOpts, Output};
use crate::connect;
use crate::output::{self, outln};

/// What `export` prints (as JSON with `--output json`).
#[derive(Serialize)]
struct ExportJson<'a> {
    path: &'a str,
    sha256: String,
    records: u64,
    chains: u64,
    heads: &'a [ChainHead],
}

/// A writer that hashes every byte it passes on.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub async fn export(file: &Path, opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let path = file.display().to_string();
    let to_stdout = file == Path::new("-");
    // Created first, so an unwritable path fails before any reading.
    let mut staged = if to_stdout {
        None
    } else {
        Some(StagedFile::create(file)?)
    };
    let chains = chains(store.as_ref()).await?;
    let heads: Vec<ChainHead> = chains.iter().map(|(head, _)| head.clone()).collect();
    let records: u64 = chains.iter().map(|(_, r)| r.len() as u64).sum();
    let lines = chains
        .into_iter()
        .flat_map(|(_, mut records)| {
            records.sort_by_key(|r| r.seq);
            records.into_iter().map(ExportLine::Record)
        })
        .chain(heads.iter().cloned().map(ExportLine::Head));
    let sha256 = match staged.as_mut() {
        Some(staged) => write_lines(staged.writer(), lines, |e| {
            anyhow::Error::new(e).context(format!("writing {path}"))
        })?,
        None => {
            let mut out = BufWriter::new(io::stdout());
            let sha = write_lines(&mut out, lines, output::stdout_error)?;
            out.flush().map_err(output::stdout_error)?;
            sha
        }
    };
    if let Some(staged) = staged {
        staged.commit()?;
    }
    let summary = ExportJson {
        path: &path,
        sha256,
        records,
        chains: heads.len() as u64,
        heads: &heads,
    };
    match (opts.output, to_stdout) {
        // stdout is the export itself: keep the summary out of it.
        (Output::Json, true) => {
            eprintln!(
                "{}",
                serde_json::to_string(&summary).context("writing JSON")?
            );
            Ok(())
        }
        (Output::Json, false) => output::print_json(&summary),
        (Output::Table, _) => {
            let mut table = output::table(["chain", "records", "last hash", "signed"]);
            for head in &heads {
                table.add_row(vec![
                    head.chain.clone(),
                    head.seq.to_string(),
                    head.hash.clone(),
                    if head.signature.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                ]);
            }
            let text = format!(
                "exported {} in {} to {path}\nsha256 {}  {path}\n{table}",
                output::count(records, "record"),
                output::count(heads.len() as u64, "chain"),
                summary.sha256
            );
            if to_stdout {
                eprintln!("{text}");
                Ok(())
            } else {
                outln!("{text}")
            }
        }
    }
}

/// Writes one JSON line per item; returns the SHA-256 (hex) of everything written.
fn write_lines(
    out: &mut impl Write,
    lines: impl Iterator<Item = ExportLine>,
    write_error: impl Fn(io::Error) -> anyhow::Error,
) -> Result<String> {
    let mut out = Hashing {
        inner: out,
        sha: Sha256::new(),
    };
    for line in lines {
        serde_json::to_writer(&mut out, &line)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(&write_error)?;
    }
    Ok(hex::encode(out.sha.finalize()))
}

/// A file written beside its destination and renamed into place on [`StagedFile::commit`], so
/// readers never see half an export. Dropped uncommitted, it removes itself.
struct StagedFile {
    temp: PathBuf,
    dest: PathBuf,
    file: Option<BufWriter<File>>,
}

impl StagedFile {
    fn create(dest: &Path) -> Result<StagedFile> {
        let name = dest
            .file_name()
            .ok_or_else(|| anyhow!("cannot write {}: it names no file", dest.display()))?;
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .with_context(|| {
                format!(
                    "cannot write {}: creating {}",
                    dest.display(),
                    temp.display()
                )
            })?;
        Ok(StagedFile {
            temp,
            dest: dest.to_path_buf(),
            file: Some(BufWriter::new(file)),
        })
    }

    fn writer(&mut self) -> &mut BufWriter<File> {
        self.file
            .as_mut()
            .expect("a staged file is open until committed")
    }

    fn commit(mut self) -> Result<()> {
        let dest = self.dest.display().to_string();
        let file = self
            .file
            .take()
            .expect("a staged file is committed once")
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {dest}"))?;
        file.sync_all().with_context(|| format!("writing {dest}"))?;
        drop(file);
        fs::rename(&self.temp, &self.dest).with_context(|| format!("cannot write {dest}"))?;
        // Renamed: nothing left for Drop to remove.
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.temp.as_os_str().is_empty() {
            // Best effort: the temp file is ours and only a failed export leaves it.
            let _ = fs::remove_file(&self.temp);
        }
    }
}
