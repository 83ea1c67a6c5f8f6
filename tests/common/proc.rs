//! A process a test started and watches through its log: shared by the tests that run
//! `peercache` or a lab client as a daemon (fetch, deploy, tap).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A process a test started: its stderr lines collected (and echoed, shown when the test
/// fails), its stdout kept for the end. Killed (SIGKILL) and reaped on drop unless
/// `stop`ped, so a failing test leaves nothing running.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Option<JoinHandle<()>>,
    stdout: Option<JoinHandle<Vec<u8>>>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (l2, n2) = (lines.clone(), name.to_string());
        let err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{n2}] {line}");
                l2.lock().unwrap().push(line);
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        Proc {
            name: name.to_string(),
            child: Some(child),
            lines,
            stderr: Some(stderr),
            stdout: Some(stdout),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Panics (with its log) when the process has exited.
    pub fn check_running(&mut self) {
        if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
            // let the reader catch the last lines
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "{} exited early ({st}); its log:\n{}",
                self.name,
                self.lines().join("\n")
            );
        }
    }

    /// The first log line containing `needle`, waiting up to `limit`.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            self.check_running();
            assert!(
                start.elapsed() < limit,
                "{}: no log line with {needle:?} after {limit:?}; its log:\n{}",
                self.name,
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait (bounded) for the exit; returns the status, stdout and log.
    pub fn stop(mut self) -> (ExitStatus, Vec<u8>, Vec<String>) {
        signal(self.pid(), "TERM");
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not stop within 30 s of SIGTERM; its log:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = self.stdout.take().unwrap().join().unwrap();
        self.stderr.take().unwrap().join().unwrap();
        (status, out, self.lines())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `kill -s SIG PID`, which must succeed.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -s {sig} {pid} failed");
}
