//! Loopback TCP: `tcp` (request/reply with a slow server), `tcp-server`
//! (standalone slow server), `epoll` (epoll_wait on a trickle of bytes).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::obj;
use crate::sys::{check, fstat, sleep_until, Error, IoContext, Result};
use crate::worker::{spawn_worker, Part};

const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// A connected loopback pair: (client side, server side, listening port).
fn loopback_pair() -> Result<(TcpStream, TcpStream, u16)> {
    let listener = TcpListener::bind(LOOPBACK).ctx("bind(127.0.0.1:0)")?;
    let server_port = listener.local_addr().ctx("getsockname(listener)")?.port();
    let client = TcpStream::connect((Ipv4Addr::LOCALHOST, server_port))
        .ctx(format!("connect(127.0.0.1:{server_port})"))?;
    let (server, _) = listener.accept().ctx("accept")?;
    for s in [&client, &server] {
        s.set_nodelay(true).ctx("setsockopt(TCP_NODELAY)")?;
    }
    Ok((client, server, server_port))
}

fn local_port(s: &TcpStream) -> Result<u16> {
    Ok(s.local_addr().ctx("getsockname")?.port())
}

/// Echo server loop for one connection: each read (1..64 bytes) is answered,
/// after sleeping `delay`, with the same bytes. Ends at end-of-file.
fn serve_conn(mut conn: TcpStream, delay: Duration, served: &AtomicU64) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        std::thread::sleep(delay);
        conn.write_all(&buf[..n])?;
        served.fetch_add(1, Ordering::Relaxed);
    }
}

/// `tcp`: `hw-tcp-cli` sends "ping" and blocks in recv for the echo, which
/// `hw-tcp-srv` sends after sleeping `delay`.
pub fn tcp(delay: Duration) -> Result<Part> {
    let (mut client, server, server_port) = loopback_pair()?;
    let client_port = local_port(&client)?;
    let requests = Arc::new(AtomicU64::new(0));
    let replies = Arc::new(AtomicU64::new(0));

    let rp = Arc::clone(&replies);
    let srv = spawn_worker("hw-tcp-srv", move |_deadline| {
        serve_conn(server, delay, &rp).ctx("hw-tcp-srv: recv/send")
    })?;

    let rq = Arc::clone(&requests);
    let cli = spawn_worker("hw-tcp-cli", move |deadline| {
        let mut buf = [0u8; 4];
        while Instant::now() < deadline {
            client.write_all(b"ping").ctx("hw-tcp-cli: send")?;
            client.read_exact(&mut buf).ctx("hw-tcp-cli: recv")?;
            rq.fetch_add(1, Ordering::Relaxed);
        }
        // Let the server see end-of-file, then wait for it to close.
        client
            .shutdown(Shutdown::Write)
            .ctx("hw-tcp-cli: shutdown")?;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).ctx("hw-tcp-cli: recv")?;
        Ok(())
    })?;

    Ok(Part {
        workers: vec![srv, cli],
        info: obj! {
            "addr" => "127.0.0.1",
            "server_port" => server_port,
            "client_port" => client_port,
            "delay_ms" => delay.as_millis() as u64,
        },
        finish: Box::new(move || {
            obj! {
                "requests" => requests.load(Ordering::Relaxed),
                "replies" => replies.load(Ordering::Relaxed),
            }
        }),
    })
}

/// `tcp-server`: `hw-tcp-srv` accepts clients until the deadline; each client
/// gets a `hw-tcp-conn` thread running the delayed echo loop.
pub fn tcp_server(bind: IpAddr, port: u16, delay: Duration) -> Result<Part> {
    let (listener, port) = crate::service::listen(bind, port)?;
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));

    let (conns, reqs) = (Arc::clone(&connections), Arc::clone(&requests));
    let srv = spawn_worker("hw-tcp-srv", move |deadline| {
        crate::service::accept_loop(
            listener,
            deadline,
            |_| "hw-tcp-conn".into(),
            conns,
            move |conn, _| {
                // A client resetting its connection is not our failure.
                let _ = serve_conn(conn, delay, &reqs);
            },
        )
    })?;

    Ok(Part {
        workers: vec![srv],
        info: obj! {
            "addr" => bind.to_string(),
            "server_port" => port,
            "delay_ms" => delay.as_millis() as u64,
        },
        finish: Box::new(move || {
            obj! {
                "connections" => connections.load(Ordering::Relaxed),
                "requests" => requests.load(Ordering::Relaxed),
            }
        }),
    })
}

/// `epoll`: `hw-epoll` sits in `epoll_wait(-1)` on one loopback socket;
/// `hw-feeder` writes one byte to the other end every `interval`.
pub fn epoll(interval: Duration) -> Result<Part> {
    let (mut feeder, mut sock, server_port) = loopback_pair()?;
    let feeder_port = local_port(&feeder)?;
    sock.set_nonblocking(true)
        .ctx("fcntl(socket, O_NONBLOCK)")?;

    // SAFETY: no pointer arguments.
    let epfd = check(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    // SAFETY: epoll_create1 returned a fresh descriptor that nothing else owns.
    let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
    let sock_fd = sock.as_raw_fd();
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
        u64: sock_fd as u64,
    };
    // SAFETY: both fds are open; ev is a valid epoll_event.
    check(
        unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, sock_fd, &mut ev) },
        "epoll_ctl(EPOLL_CTL_ADD)",
    )?;
    let epoll_ino = fstat(epfd.as_raw_fd(), "epoll fd")?.st_ino;
    let info = obj! {
        "addr" => "127.0.0.1",
        "epoll_fd" => epfd.as_raw_fd(),
        "epoll_ino" => epoll_ino,
        "epoll_sock_fd" => sock_fd,
        "server_port" => server_port,
        "feeder_port" => feeder_port,
        "interval_ms" => interval.as_millis() as u64,
    };

    let waits = Arc::new(AtomicU64::new(0));
    let bytes_read = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));

    let (w, b) = (Arc::clone(&waits), Arc::clone(&bytes_read));
    let ep = spawn_worker("hw-epoll", move |_deadline| {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: events is a valid array of the given length.
            let n = unsafe {
                libc::epoll_wait(
                    epfd.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    -1,
                )
            };
            if n == -1 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::call("epoll_wait", e));
            }
            w.fetch_add(1, Ordering::Relaxed);
            // Drain the (non-blocking) socket; end-of-file ends the thread.
            loop {
                match sock.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(k) => {
                        b.fetch_add(k as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::call("hw-epoll: recv", e)),
                }
            }
        }
    })?;

    let wr = Arc::clone(&writes);
    let fd = spawn_worker("hw-feeder", move |deadline| {
        let mut next = Instant::now() + interval;
        while next < deadline {
            sleep_until(next);
            feeder.write_all(b"x").ctx("hw-feeder: send")?;
            wr.fetch_add(1, Ordering::Relaxed);
            next += interval;
        }
        sleep_until(deadline);
        // Closing our end gives hw-epoll end-of-file, which ends it.
        Ok(())
    })?;

    Ok(Part {
        workers: vec![ep, fd],
        info,
        finish: Box::new(move || {
            obj! {
                "epoll_waits" => waits.load(Ordering::Relaxed),
                "bytes_read" => bytes_read.load(Ordering::Relaxed),
                "feeder_writes" => writes.load(Ordering::Relaxed),
            }
        }),
    })
}
