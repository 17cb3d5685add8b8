//! A TCP proxy of the test's own between secretgen and PostgreSQL, to cut the database off
//! without touching the machine's server: it forwards, refuses (closes every connection,
//! new and old), or holds (accepts and keeps connections open, passing nothing: a database
//! behind a dead network). It can also cut one connection off mid-conversation: the first
//! to send given bytes goes silent both ways, and neither end is closed (a network cut the
//! server never hears of).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
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
    cut: Arc<Cut>,
}

/// The bytes that cut the connection that sends them next, and whether that happened.
#[derive(Default)]
struct Cut {
    pattern: Mutex<Option<Vec<u8>>>,
    done: AtomicBool,
}

impl Proxy {
    /// A proxy on a free port of 127.0.0.1 to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let cut: Arc<Cut> = Arc::default();
        let (m, o, c) = (Arc::clone(&mode), Arc::clone(&open), Arc::clone(&cut));
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
                let silent = Arc::new(AtomicBool::new(false));
                let to_server = Link {
                    mode: Arc::clone(&m),
                    silent: Arc::clone(&silent),
                    cut: Some(Arc::clone(&c)),
                };
                let to_client = Link {
                    mode: Arc::clone(&m),
                    silent,
                    cut: None,
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    to_server,
                );
                pipe(server, client, to_client);
            }
        });
        Proxy {
            port,
            mode,
            open,
            cut,
        }
    }

    /// The next connection whose client sends `pattern` goes silent, both ways, from
    /// those bytes on (they are not passed on), and stays open.
    pub fn cut_on(&self, pattern: &[u8]) {
        self.cut.done.store(false, Ordering::SeqCst);
        *self.cut.pattern.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Whether a connection was cut since [`Proxy::cut_on`].
    pub fn was_cut(&self) -> bool {
        self.cut.done.load(Ordering::SeqCst)
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

/// One direction of a connection: the proxy's mode, whether this connection was cut, and
/// for the client's direction the bytes that cut it.
struct Link {
    mode: Arc<AtomicU8>,
    silent: Arc<AtomicBool>,
    cut: Option<Arc<Cut>>,
}

impl Link {
    /// Whether `bytes` cut the connection now.
    fn cuts(&self, bytes: &[u8]) -> bool {
        let Some(cut) = &self.cut else { return false };
        let mut pattern = cut.pattern.lock().unwrap();
        let found = pattern
            .as_deref()
            .is_some_and(|p| bytes.windows(p.len()).any(|w| w == p));
        if found {
            *pattern = None;
            self.silent.store(true, Ordering::SeqCst);
            cut.done.store(true, Ordering::SeqCst);
        }
        found
    }
}

/// Copies `from` to `to` while the proxy forwards; stops (holding the bytes back) while it
/// holds. Once the connection is cut it reads and drops everything, and closes nothing,
/// even when an end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream, link: Link) {
    let mode = Arc::clone(&link.mode);
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) if link.silent.load(Ordering::SeqCst) => return,
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if link.silent.load(Ordering::SeqCst) || link.cuts(&buf[..n]) {
                continue;
            }
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
