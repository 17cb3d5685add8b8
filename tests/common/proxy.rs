//! A TCP proxy of the test's own between secretgen and PostgreSQL, to cut the database off
//! without touching the machine's server: it forwards, refuses (closes every connection,
//! new and old), or holds (accepts and keeps connections open, passing nothing: a database
//! behind a dead network).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FORWARD: u8 = 0;
const REFUSE: u8 = 1;
const HOLD: u8 = 2;

/// The proxy; it stops forwarding when dropped.
pub struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (m, o) = (Arc::clone(&mode), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                match m.load(Ordering::SeqCst) {
                    FORWARD => {}
                    REFUSE => {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    _ => {
                        o.lock().unwrap().push(client);
                        continue;
                    }
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut open = o.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), &m);
                pipe(server, client, &m);
            }
        });
        Proxy { port, mode, open }
    }

    /// The port secretgen should connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection and refuses new ones, as a stopped server does.
    pub fn refuse(&self) {
        self.mode.store(REFUSE, Ordering::SeqCst);
        self.close_all();
    }

    /// Passes nothing more on any connection, old or new, and closes none: a dead network.
    pub fn hold(&self) {
        self.mode.store(HOLD, Ordering::SeqCst);
    }

    /// Forwards again (connections that were held are closed: they lost bytes).
    pub fn restore(&self) {
        self.close_all();
        self.mode.store(FORWARD, Ordering::SeqCst);
    }

    fn close_all(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.refuse();
    }
}

/// Copies `from` to `to` while the proxy forwards; stops (holding the bytes back) while it
/// holds.
fn pipe(mut from: TcpStream, mut to: TcpStream, mode: &Arc<AtomicU8>) {
    let mode = Arc::clone(mode);
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while mode.load(Ordering::SeqCst) == HOLD {
                std::thread::sleep(Duration::from_millis(10));
            }
            if mode.load(Ordering::SeqCst) == REFUSE || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
