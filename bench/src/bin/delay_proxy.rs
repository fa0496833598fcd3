//! `delay-proxy --listen ADDR --to ADDR --one-way-ms N`: forward TCP connections, holding
//! every byte N ms in each direction (a round trip of 2N), so the replication link can be
//! measured at a WAN's latency on a kernel without `tc netem` (this VM's lacks sch_netem).
//! Each direction is a reader thread that timestamps what it reads and a writer thread that
//! sends it once due, in order; bandwidth is not limited.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{unbounded, Receiver};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| -> anyhow::Result<String> {
        let at = args.iter().position(|a| a == name).with_context(|| {
            format!("usage: delay-proxy --listen ADDR --to ADDR --one-way-ms N (no {name})")
        })?;
        args.get(at + 1)
            .cloned()
            .with_context(|| format!("{name} needs a value"))
    };
    let listen = flag("--listen")?;
    let to = flag("--to")?;
    let delay = Duration::from_millis(flag("--one-way-ms")?.parse()?);
    let listener = TcpListener::bind(&listen).with_context(|| format!("binding {listen}"))?;
    eprintln!("delay-proxy {listen} -> {to}, {delay:?} each way");
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(&to) else {
            continue; // the primary is not up (yet): the standby retries
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        forward(client.try_clone()?, server.try_clone()?, delay);
        forward(server, client, delay);
    }
    Ok(())
}

/// Copy `from` → `to`, each chunk sent `delay` after it was read.
fn forward(mut from: TcpStream, to: TcpStream, delay: Duration) {
    let (tx, rx) = unbounded::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || deliver(rx, to));
}

fn deliver(rx: Receiver<(Instant, Vec<u8>)>, mut to: TcpStream) {
    for (due, bytes) in rx {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if to.write_all(&bytes).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
