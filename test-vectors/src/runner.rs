//! The conformance runner (SPEC.md §17.2–§17.3): drives another
//! implementation's adapter through the vectors and judges every answer.
//!
//! The runner trusts its adapter for nothing but the answers it matches:
//! every request waits at most [`RunnerOptions::timeout`]; an adapter that
//! hangs or dies fails the vector in progress by name and is started again
//! (at most [`MAX_RESTARTS`] times, after which the remaining vectors fail as
//! not run); a line that is not an answer is reported and skipped, and
//! answers are matched to requests by `id`, so one stray line never shifts
//! the answers after it. Results are handed to the caller one by one as they
//! come, so the command line can stream them.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::describe::{difference, shorten};
use crate::vector::VectorFile;

/// How many times the runner starts the adapter again after it hung or died.
pub const MAX_RESTARTS: usize = 3;

/// The longest line the runner keeps from an adapter; a longer one is
/// reported and dropped, so an adapter cannot make the runner's memory grow
/// without bound. The largest answer to a committed vector is far below it.
pub const MAX_LINE: usize = 16 << 20;

/// How many lines the reader thread holds before the adapter has to wait.
const LINE_QUEUE: usize = 256;

/// How long the runner waits for an answer before it says which vector it waits for.
const NOTICE_AFTER: Duration = Duration::from_secs(2);

/// The result of one vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The output matched.
    Passed,
    /// The output differed, the adapter answered an error, did not answer
    /// in time or died; the text says what, in plain words.
    Failed(String),
    /// The adapter does not implement this kind (`"unsupported": true`).
    Skipped,
}

/// The result of one vector, named `kind/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorResult {
    /// `kind/name`.
    pub vector: String,
    /// What happened.
    pub outcome: Outcome,
}

/// Something the adapter did that is not an answer to the request in
/// progress: a stray line, a late answer, an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice(pub String);

/// What the runner reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A vector was judged.
    Result(VectorResult),
    /// The adapter did something worth telling (not counted as a result).
    Notice(Notice),
}

/// How strictly a run is judged, and how long the runner waits.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerOptions {
    /// The longest the adapter may take to answer one request, and to exit
    /// once its stdin is closed.
    pub timeout: Duration,
    /// The largest share of skipped vectors (0.0–1.0) a run may have and
    /// still succeed; a run where every vector was skipped fails unless this is 1.0.
    pub allowed_skip_share: f64,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            allowed_skip_share: 0.0,
        }
    }
}

/// Why the runner could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The adapter's command could not be started.
    #[error("cannot start the adapter: {0}")]
    Start(#[from] std::io::Error),
}

/// The whole run: every vector's result and what the adapter did besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One result per vector, in file order.
    pub results: Vec<VectorResult>,
    /// Stray lines, late answers, exits and restarts.
    pub notices: Vec<Notice>,
    /// Set when the adapter did not exit cleanly (status 0) after its stdin closed.
    pub bad_exit: Option<String>,
}

impl Report {
    /// Counts: (passed, failed, skipped).
    pub fn tally(&self) -> (usize, usize, usize) {
        tally(&self.results)
    }

    /// Why the run does not succeed under `options`, or `None` when it does:
    /// a failed vector, no vector at all, too many skipped, or an unclean exit.
    pub fn verdict(&self, options: &RunnerOptions) -> Option<String> {
        let (passed, failed, skipped) = self.tally();
        let total = passed + failed + skipped;
        if failed > 0 {
            return Some(format!("{failed} of {total} failed"));
        }
        if total == 0 {
            return Some("nothing ran".into());
        }
        let share = skipped as f64 / total as f64;
        if skipped > 0 && share > options.allowed_skip_share {
            let allowed = options.allowed_skip_share * 100.0;
            return Some(if skipped == total {
                format!("all {total} were skipped; --allow-skip accepts that")
            } else {
                format!(
                    "{skipped} of {total} were skipped, more than the {allowed:.0}% allowed; \
                     --allow-skip=PERCENT raises the limit"
                )
            });
        }
        self.bad_exit.clone()
    }
}

/// Counts of a list of results: (passed, failed, skipped).
pub fn tally(results: &[VectorResult]) -> (usize, usize, usize) {
    results
        .iter()
        .fold((0, 0, 0), |(p, f, s), r| match r.outcome {
            Outcome::Passed => (p + 1, f, s),
            Outcome::Failed(_) => (p, f + 1, s),
            Outcome::Skipped => (p, f, s + 1),
        })
}

/// One line the adapter printed, or the end of its output.
enum Line {
    Text(String),
    /// A line longer than [`MAX_LINE`], dropped.
    TooLong,
    End,
}

/// A running adapter: a thread that writes its stdin (so an adapter that
/// stops reading never blocks the runner past the timeout), and a thread
/// that forwards its stdout lines.
struct Adapter {
    child: Child,
    stdin: Option<SyncSender<String>>,
    lines: Receiver<Line>,
}

impl Adapter {
    /// Starts `sh -c command` in the runner's working directory, in a
    /// process group of its own (so a kill also ends what the shell
    /// started); its stderr goes to the runner's stderr untouched.
    fn start(command: &str) -> std::io::Result<Self> {
        let mut command_line = Command::new("sh");
        command_line
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command_line.process_group(0);
        }
        let mut child = command_line.spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the adapter has no stdin"))?;
        let stdin = Self::writer(stdin);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("the adapter has no stdout"))?;
        let (send, lines) = mpsc::sync_channel(LINE_QUEUE);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                let limit = MAX_LINE as u64 + 1;
                let line = match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => Line::End,
                    Ok(_) if line.len() > MAX_LINE => {
                        // Drop the rest of the line, keeping nothing of it.
                        let mut rest = Vec::new();
                        while !line.ends_with(b"\n") {
                            rest.clear();
                            match reader.by_ref().take(64 * 1024).read_until(b'\n', &mut rest) {
                                Ok(0) | Err(_) => break,
                                Ok(_) => line = rest.split_off(rest.len().saturating_sub(1)),
                            }
                        }
                        Line::TooLong
                    }
                    Ok(_) => Line::Text(String::from_utf8_lossy(&line).trim_end().to_owned()),
                };
                let end = matches!(line, Line::End);
                if send.send(line).is_err() || end {
                    return;
                }
            }
        });
        Ok(Self {
            child,
            stdin: Some(stdin),
            lines,
        })
    }

    /// The thread that writes request lines to the adapter's stdin; it
    /// closes stdin when the sender is dropped, and ends at a write error.
    fn writer(mut stdin: ChildStdin) -> SyncSender<String> {
        let (send, requests) = mpsc::sync_channel::<String>(4);
        std::thread::spawn(move || {
            for request in requests {
                if writeln!(stdin, "{request}")
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    return;
                }
            }
        });
        send
    }

    /// Hands one request line to the writer; `false` when the adapter no
    /// longer reads (the writer ended at a write error, or requests pile up
    /// unread).
    fn send(&mut self, request: &Value) -> bool {
        self.stdin
            .as_ref()
            .is_some_and(|stdin| stdin.try_send(request.to_string()).is_ok())
    }

    /// Ends the adapter now (after a hang or a crash): its whole process
    /// group, then the shell itself, whose status is returned.
    fn kill(mut self) -> Option<ExitStatus> {
        drop(self.stdin.take());
        self.kill_group();
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Sends SIGKILL to the adapter's process group (the group's id is the
    /// shell's pid, see [`Adapter::start`]).
    fn kill_group(&self) {
        #[cfg(unix)]
        {
            // The shell's own `kill`: no separate binary needed.
            let kill = format!("kill -s KILL -- -{}", self.child.id());
            let _ = Command::new("sh")
                .args(["-c", &kill])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Closes stdin and waits up to `timeout` for a clean exit.
    fn finish(mut self, timeout: Duration) -> Result<(), String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!(
                        "the adapter {} after its stdin closed (SPEC.md §17.3 asks for status 0)",
                        exit_words(status)
                    ));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    self.kill_group();
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "the adapter did not exit within {} s of its stdin closing; it was killed",
                        timeout.as_secs_f64()
                    ));
                }
                Err(e) => return Err(format!("waiting for the adapter: {e}")),
            }
        }
    }
}

/// "exited with status 3" or "was killed by signal 9".
fn exit_words(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(signal) = status.signal() {
                    return format!("was killed by signal {signal}");
                }
            }
            "ended without a status".into()
        }
    }
}

/// What became of one request.
enum Wait {
    Answer(Outcome),
    /// No answer in time: the adapter hangs.
    Hung,
    /// The adapter closed its output (it died or exited).
    Died,
}

/// Runs every vector of `files` against the adapter `sh -c command`, calling
/// `on_event` for every result and notice as it happens.
pub fn run(
    command: &str,
    files: &[VectorFile],
    options: &RunnerOptions,
    mut on_event: impl FnMut(&Event),
) -> Result<Report, RunnerError> {
    let mut report = Report::default();
    let note = |report: &mut Report, text: String, on_event: &mut dyn FnMut(&Event)| {
        let notice = Notice(text);
        on_event(&Event::Notice(notice.clone()));
        report.notices.push(notice);
    };
    let mut adapter = Some(Adapter::start(command)?);
    let mut restarts = 0;
    // The vector after which the adapter hung or died, until it is restarted.
    let mut lost: Option<String> = None;
    let mut id = 0u64;
    for file in files {
        for vector in &file.vectors {
            id += 1;
            let name = format!("{}/{}", file.kind, vector.name);
            // A hung or dead adapter gets another start, while there are
            // vectors left and restarts to spend.
            if let Some(after) = lost.take() {
                if restarts < MAX_RESTARTS {
                    restarts += 1;
                    note(
                        &mut report,
                        format!(
                            "starting the adapter again after {after} ({restarts} of {MAX_RESTARTS} restarts)"
                        ),
                        &mut on_event,
                    );
                    adapter = Some(Adapter::start(command)?);
                } else {
                    note(
                        &mut report,
                        format!(
                            "giving up on the adapter after {MAX_RESTARTS} restarts: the remaining vectors are not run"
                        ),
                        &mut on_event,
                    );
                }
            }
            let outcome = match adapter.as_mut() {
                None => Outcome::Failed(
                    "not run: the adapter hung or died too often, the runner gave up on it".into(),
                ),
                Some(running) => {
                    let request = json!({"id": id, "kind": file.kind, "input": vector.input});
                    let wait = if running.send(&request) {
                        wait_for(running, id, &name, &vector.output, options, &mut |text| {
                            note(&mut report, text, &mut on_event)
                        })
                    } else {
                        Wait::Died
                    };
                    match wait {
                        Wait::Answer(outcome) => outcome,
                        Wait::Hung | Wait::Died => {
                            let hung = matches!(wait, Wait::Hung);
                            lost = Some(name.clone());
                            let status = adapter.take().and_then(Adapter::kill);
                            let why = if hung {
                                format!(
                                    "no answer within {} s: the adapter hangs on this vector (it was killed)",
                                    options.timeout.as_secs_f64()
                                )
                            } else {
                                format!(
                                    "the adapter stopped before answering: it {}",
                                    status.map_or_else(|| "closed its output".into(), exit_words)
                                )
                            };
                            Outcome::Failed(why)
                        }
                    }
                }
            };
            let result = VectorResult {
                vector: name,
                outcome,
            };
            on_event(&Event::Result(result.clone()));
            report.results.push(result);
        }
    }
    if let Some(Err(why)) = adapter.map(|running| running.finish(options.timeout)) {
        note(&mut report, why.clone(), &mut on_event);
        report.bad_exit = Some(why);
    }
    Ok(report)
}

/// Waits for the answer with `id`, reporting every other line.
fn wait_for(
    adapter: &mut Adapter,
    id: u64,
    name: &str,
    expected: &Value,
    options: &RunnerOptions,
    note: &mut dyn FnMut(String),
) -> Wait {
    let start = Instant::now();
    let deadline = start + options.timeout;
    let mut told = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Wait::Hung;
        }
        let mut wait = deadline - now;
        if !told {
            wait = wait.min((start + NOTICE_AFTER).saturating_duration_since(now));
        }
        match adapter.lines.recv_timeout(wait) {
            Ok(Line::Text(line)) => {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(answer)) => match answer.get("id").and_then(Value::as_u64) {
                        Some(got) if got == id => return Wait::Answer(judge(&answer, expected)),
                        Some(got) if got < id => note(format!(
                            "ignored a late answer to request {got} (already judged) while waiting for {name}"
                        )),
                        _ => note(format!(
                            "ignored an answer with id {} while waiting for request {id} ({name})",
                            shorten(answer.get("id").unwrap_or(&Value::Null))
                        )),
                    },
                    _ => note(format!(
                        "ignored a line that is not a JSON answer while waiting for {name}: {}",
                        shorten(&Value::String(line))
                    )),
                }
            }
            Ok(Line::TooLong) => note(format!(
                "ignored a line longer than {} MiB while waiting for {name}",
                MAX_LINE >> 20
            )),
            Ok(Line::End) | Err(RecvTimeoutError::Disconnected) => return Wait::Died,
            Err(RecvTimeoutError::Timeout) => {
                if !told && Instant::now() < deadline {
                    told = true;
                    note(format!(
                        "still waiting for the answer to {name} (timeout {} s)",
                        options.timeout.as_secs_f64()
                    ));
                }
            }
        }
    }
}

/// Judges one answer object against the vector's output (SPEC.md §17.3).
fn judge(answer: &serde_json::Map<String, Value>, expected: &Value) -> Outcome {
    if let Some(extra) = answer
        .keys()
        .find(|k| !matches!(k.as_str(), "id" | "output" | "unsupported" | "error"))
    {
        return Outcome::Failed(format!(
            "the answer has a field \"{extra}\" that the adapter protocol does not define"
        ));
    }
    let present: Vec<&str> = ["output", "unsupported", "error"]
        .into_iter()
        .filter(|k| answer.contains_key(*k))
        .collect();
    if present.len() != 1 {
        return Outcome::Failed(format!(
            "the answer must have exactly one of output, unsupported or error; it has {}",
            if present.is_empty() {
                "none".to_owned()
            } else {
                present.join(" and ")
            }
        ));
    }
    match present[0] {
        "unsupported" if answer["unsupported"] == Value::Bool(true) => Outcome::Skipped,
        "unsupported" => Outcome::Failed(format!(
            "\"unsupported\" must be true, the adapter sent {}",
            shorten(&answer["unsupported"])
        )),
        "error" => Outcome::Failed(format!(
            "the adapter answered with an error: {}",
            shorten(&answer["error"])
        )),
        _ => match difference(expected, &answer["output"], "output") {
            None => Outcome::Passed,
            Some(why) => Outcome::Failed(why),
        },
    }
}
