//! `curfew audit [list | verify | export FILE]`: the trail of finished operations with every
//! task's change. The checks `verify` makes are pure functions in `curfew_core::audit`; this
//! module only reads the trail (a page of operations at a time, never a Scan) and the
//! baselines, and prints.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use curfew_core::audit::{self, LastChanges, Problem};
use curfew_core::operation::{Operation, Task};
use curfew_core::ports::StateStore;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cli::{AuditArgs, AuditCommand, GlobalOpts, Output};
use crate::connect;
use crate::output::{self, outln, OperationJson};

/// Operations read per Query of the operations index.
const PAGE: usize = 100;
/// Task listings (one Query each, paged) or baseline reads in flight at once.
const CONCURRENCY: usize = 8;

/// Runs an audit command.
pub async fn run(args: AuditArgs, opts: &GlobalOpts) -> Result<()> {
    match args.command.unwrap_or(AuditCommand::List { limit: 20 }) {
        AuditCommand::List { limit } => list(usize::from(limit), opts).await,
        AuditCommand::Verify => verify(opts).await,
        AuditCommand::Export { file } => export(&file, opts).await,
    }
}

/// Every operation, newest first, one page at a time.
struct Pages<'a> {
    store: &'a dyn StateStore,
    next: Option<String>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(store: &'a dyn StateStore) -> Self {
        Pages {
            store,
            next: None,
            done: false,
        }
    }

    /// The next page with each operation's tasks, or `None` after the last.
    async fn next_page(&mut self) -> Result<Option<Vec<(Operation, Vec<Task>)>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .list_operations_page(PAGE, self.next.as_deref())
            .await
            .context("listing operations")?;
        self.done = page.next.is_none();
        self.next = page.next;
        with_tasks(self.store, page.operations).await.map(Some)
    }
}

/// Each operation with its tasks, in the order given.
async fn with_tasks(
    store: &dyn StateStore,
    ops: Vec<Operation>,
) -> Result<Vec<(Operation, Vec<Task>)>> {
    stream::iter(ops.into_iter().map(|op| async move {
        let tasks = store
            .list_tasks(&op.id)
            .await
            .with_context(|| format!("listing the tasks of {}", op.id))?;
        Ok::<_, anyhow::Error>((op, tasks))
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await
}

async fn list(limit: usize, opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let ops: Vec<_> = store
        .list_operations(limit)
        .await
        .context("listing operations")?
        .into_iter()
        .filter(|op| op.status.is_final())
        .collect();
    let entries = with_tasks(store.as_ref(), ops).await?;
    match opts.output {
        Output::Json => output::print_json(
            &entries
                .iter()
                .map(|(op, tasks)| OperationJson::new(op, tasks))
                .collect::<Vec<_>>(),
        ),
        Output::Table => {
            let mut table = output::table([
                "finished (UTC)",
                "operation",
                "action",
                "source",
                "target",
                "account",
                "region",
                "result",
                "before",
                "after",
                "reason",
            ]);
            for (op, tasks) in &entries {
                for task in tasks {
                    table.add_row(vec![
                        output::utc(task.updated_at),
                        op.id.clone(),
                        op.action.to_string(),
                        output::source(op),
                        task.target.display_name(),
                        task.target.account.clone(),
                        task.target.region.clone(),
                        task.status.to_string(),
                        output::sizes(task.before),
                        output::sizes(task.after),
                        task.reason.clone().unwrap_or_default(),
                    ]);
                }
            }
            outln!("{table}")
        }
    }
}

/// What `verify --output json` prints.
#[derive(Serialize)]
struct VerifyJson<'a> {
    operations: u64,
    tasks: u64,
    problems: &'a [Problem],
}

async fn verify(opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let store = store.as_ref();
    let (mut operations, mut tasks) = (0u64, 0u64);
    let mut problems = Vec::new();
    let mut changes = LastChanges::default();
    let mut pages = Pages::new(store);
    while let Some(page) = pages.next_page().await? {
        for (op, op_tasks) in page {
            // Unfinished operations are not in the trail, but their tasks say which targets
            // are changing now and which changes already happened.
            if op.status.is_final() {
                operations += 1;
                tasks += op_tasks.len() as u64;
                problems.extend(audit::check_operation(&op, &op_tasks));
            }
            changes.record(&op, &op_tasks);
        }
    }
    let settled: Vec<_> = changes.settled().collect();
    let baselines: Vec<_> = stream::iter(settled.iter().map(|(key, _)| async move {
        store
            .get_baseline(key)
            .await
            .with_context(|| format!("reading the baseline of {key}"))
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    problems.extend(
        settled
            .iter()
            .zip(&baselines)
            .filter_map(|((key, last), baseline)| {
                changes.check_baseline(key, last, baseline.as_ref())
            }),
    );
    let summary = format!(
        "verified {}, {}: {}",
        output::count(operations, "operation"),
        output::count(tasks, "task"),
        match problems.len() {
            0 => "no problems".to_string(),
            n => output::count(n as u64, "problem"),
        }
    );
    match opts.output {
        Output::Json => output::print_json(&VerifyJson {
            operations,
            tasks,
            problems: &problems,
        })?,
        Output::Table => {
            if !problems.is_empty() {
                let mut table = output::table(["operation", "target", "problem"]);
                for p in &problems {
                    table.add_row(vec![
                        p.operation.clone(),
                        p.target.clone().unwrap_or_else(|| "-".into()),
                        p.problem.clone(),
                    ]);
                }
                outln!("{table}")?;
            }
            let unchecked = changes.in_flight();
            if unchecked > 0 {
                eprintln!(
                    "note: {unchecked} targets with work in flight were not compared with their baseline"
                );
            }
            if problems.is_empty() {
                outln!("{summary}")?;
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(summary))
    }
}

/// What `export --output json` prints.
#[derive(Serialize)]
struct ExportJson<'a> {
    path: &'a str,
    operations: u64,
    tasks: u64,
}

async fn export(file: &Path, opts: &GlobalOpts) -> Result<()> {
    let store = connect::store(opts).await?;
    let path = file.display().to_string();
    let to_stdout = file == Path::new("-");
    let (operations, tasks) = if to_stdout {
        let mut out = BufWriter::new(io::stdout());
        let counts = write_trail(store.as_ref(), &mut out, output::stdout_error).await?;
        out.flush().map_err(output::stdout_error)?;
        counts
    } else {
        // Created first, so an unwritable path fails before any reading.
        let mut staged = StagedFile::create(file)?;
        let counts = write_trail(store.as_ref(), staged.writer(), |e| {
            anyhow::Error::new(e).context(format!("writing {path}"))
        })
        .await?;
        staged.commit()?;
        counts
    };
    match opts.output {
        Output::Json => {
            let summary = ExportJson {
                path: &path,
                operations,
                tasks,
            };
            if to_stdout {
                // stdout is the export itself: keep the summary out of it.
                eprintln!(
                    "{}",
                    serde_json::to_string(&summary).context("writing JSON")?
                );
                Ok(())
            } else {
                output::print_json(&summary)
            }
        }
        Output::Table => {
            eprintln!(
                "exported {} ({}) to {path}",
                output::count(operations, "operation"),
                output::count(tasks, "task")
            );
            Ok(())
        }
    }
}

/// Writes every finished operation, newest first, one JSON line each; returns how many
/// operations and tasks were written. `write_error` describes a failed write (stdout and a
/// file fail differently: see [`output::stdout_error`]).
async fn write_trail(
    store: &dyn StateStore,
    out: &mut impl Write,
    write_error: impl Fn(io::Error) -> anyhow::Error,
) -> Result<(u64, u64)> {
    let (mut operations, mut tasks) = (0u64, 0u64);
    let mut pages = Pages::new(store);
    while let Some(page) = pages.next_page().await? {
        for (op, op_tasks) in page.iter().filter(|(op, _)| op.status.is_final()) {
            serde_json::to_writer(&mut *out, &OperationJson::new(op, op_tasks))
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(&write_error)?;
            operations += 1;
            tasks += op_tasks.len() as u64;
        }
    }
    Ok((operations, tasks))
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
