//! The seed's client: sends `MyInfo { red: 3333.0, blue: 20.01 }` to the
//! compare server and prints the struct it gets back (run
//! `compare_server` first).

use std::time::{Duration, Instant};

use ipckit::service::Client;
use serde::{Deserialize, Serialize};

/// The struct the client fills and the server modifies.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct MyInfo {
    red: f64,
    blue: f64,
}

fn main() -> Result<(), ipckit::Error> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "CompareServer".into());
    let client = Client::connect(&name, Duration::from_secs(5))?;
    let sent = MyInfo {
        red: 3333.0,
        blue: 20.01,
    };
    let t = Instant::now();
    let got: MyInfo = client.call("compare", &sent)?;
    println!(
        "red={:.2}, blue={:.2} (round trip {:?})",
        got.red,
        got.blue,
        t.elapsed()
    );
    Ok(())
}
