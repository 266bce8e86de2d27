//! The seed's compute server: receives a `MyInfo { red, blue }`, shows it,
//! and returns it modified (`red = 2.0`, `blue = 1.0`).
//!
//! ```sh
//! cargo run -p ipckit --example compare_server &
//! cargo run -p ipckit --example compare_client   # prints red=2.00, blue=1.00
//! ```

use ipckit::service::{RemoteError, Server};
use serde::{Deserialize, Serialize};

/// The struct the client fills and the server modifies.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct MyInfo {
    red: f64,
    blue: f64,
}

fn main() -> Result<(), ipckit::Error> {
    let server = Server::builder("CompareServer")
        .handler("compare", |mut info: MyInfo| {
            println!("client: red={:.2}, blue={:.2}", info.red, info.blue);
            info.blue = 1.0;
            info.red = 2.0;
            Ok::<_, RemoteError>(info)
        })
        .bind()?;
    println!("serving '{}'; stop with Ctrl-C", server.name());
    server.wait();
    Ok(())
}
