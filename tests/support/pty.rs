//! A real pseudo-terminal for tests that press Ctrl-C: the command runs as the session leader
//! with the pty as its controlling terminal, so a `^C` written to the master makes the kernel
//! send SIGINT to the terminal's foreground process group — exactly what an operator's
//! keyboard does, and nothing more (children in process groups of their own are not hit).

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A command running on a pseudo-terminal, with everything it wrote collected.
pub struct PtyChild {
    master: std::fs::File,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl PtyChild {
    /// Starts `command` on a new pseudo-terminal (stdin, stdout and stderr).
    pub fn spawn(command: &mut Command) -> PtyChild {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty(3) fills two descriptors; the null pointers ask for no name, default
        // terminal settings and the default window size.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = || Stdio::from(slave.try_clone().unwrap());
        command.stdin(stdio()).stdout(stdio()).stderr(stdio());
        // SAFETY: only async-signal-safe calls between fork and exec: a new session, then the
        // pty (now stdin) as its controlling terminal.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("the command starts on the pty");
        drop(slave);
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut master = master.try_clone().unwrap();
            let screen = screen.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                // Reading ends with EIO once the last process holding the terminal is gone.
                while let Ok(n) = master.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().extend_from_slice(&buffer[..n]);
                }
            })
        };
        PtyChild {
            master,
            child,
            screen,
            reader: Some(reader),
        }
    }

    /// The process id of the command (the terminal's session and foreground group leader).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Presses Ctrl-C on the terminal.
    pub fn ctrl_c(&mut self) {
        self.master.write_all(&[0x03]).unwrap();
        self.master.flush().unwrap();
    }

    /// Everything the command wrote so far, as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits for the command to end (killing it after `limit`, so a hang fails the test rather
    /// than blocking it) and returns its exit code and everything it wrote.
    pub fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let code = self.wait_exit(limit);
        // The reader ends when every holder of the terminal is gone; a leftover child that
        // still holds it must not hang the test, so wait only briefly.
        let reader = self.reader.take().unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while !reader.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        (code, self.screen())
    }

    /// Waits for the command itself to end (killing it after `limit`) and returns its exit
    /// code, without waiting for what it left holding the terminal.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
