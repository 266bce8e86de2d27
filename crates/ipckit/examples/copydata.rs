//! The WM_COPYDATA example of the .NET article (seed 002): one process sends
//! a JSON string to another, which shows it and answers.
//!
//! ```sh
//! cargo run -p ipckit --example copydata
//! ```
//!
//! Run without arguments it starts itself again as the receiver (the
//! "window" whose `WndProc` handles `WM_COPYDATA`), waits until that process
//! is findable (`FindWindow`), then sends the string (`SendMessage`) and
//! prints the receiver's result.

use std::time::{Duration, Instant};

use ipckit::message::{self, Receiver, Reply, WM_COPYDATA};

const NAME: &str = "copydata/receiver";

fn main() -> Result<(), ipckit::Error> {
    if std::env::args().nth(1).as_deref() == Some("--receiver") {
        return receiver();
    }
    // A private namespace for this run, shared with the child.
    let dir = std::env::temp_dir().join(format!("ipckit-copydata-{}", std::process::id()));
    let ns = ipckit::Namespace::at(&dir)?;
    std::env::set_var(ipckit::name::NAMESPACE_ENV, ns.dir());
    let exe = std::env::current_exe().expect("own path");
    let mut child = Reaped(
        std::process::Command::new(exe)
            .arg("--receiver")
            .spawn()
            .expect("start the receiver process"),
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while !message::find(NAME)? {
        assert!(Instant::now() < deadline, "the receiver did not register");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The sender side of the article: a JSON string in a COPYDATASTRUCT.
    let send_string = r#"{"userCode":"dba", "wardCode":123, "mrn":456}"#;
    let reply = message::send(
        NAME,
        WM_COPYDATA,
        send_string.as_bytes(),
        Duration::from_secs(5),
    )?;
    println!(
        "sender (pid {}): result {} reply {:?}",
        std::process::id(),
        reply.result,
        String::from_utf8_lossy(&reply.data)
    );
    let status = child.0.wait().expect("wait for the receiver");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success());
    Ok(())
}

/// The receiver process, killed and reaped if the sender fails early.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn receiver() -> Result<(), ipckit::Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    let _window = Receiver::register(NAME, move |m| {
        if m.id != WM_COPYDATA {
            return Reply::new(0);
        }
        // The article's MessageBox.Show(copyData.lpData).
        let text = String::from_utf8_lossy(m.data).into_owned();
        println!(
            "receiver (pid {}): WM_COPYDATA from pid {}: {text}",
            std::process::id(),
            m.sender_pid
        );
        let _ = tx.send(());
        Reply::new(1).with_data(b"shown".to_vec())
    })?;
    rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        ipckit::Error::new(
            ipckit::ErrorKind::Timeout,
            "no WM_COPYDATA arrived within 30 s",
        )
    })?;
    Ok(())
}
