//! The byte-stream seam: what a served connection, a peer link and a
//! repair exchange read and write. A node runs on TCP ([`TcpNetwork`]); the
//! cluster simulator plugs in in-memory links with its own faults.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// One connection's byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// A second handle on the same connection, so one task reads while
    /// another writes.
    fn try_clone(&self) -> io::Result<BoxStream>;
    /// Something that ends the connection both ways from outside (a pending
    /// read on any handle then returns).
    fn closer(&self) -> Closer;
    /// A read that gets nothing for `timeout` fails `TimedOut`.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// A write that makes no progress for `timeout` fails `TimedOut`.
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Ends the connection both ways.
    fn shut_down(&self) {
        self.closer().close();
    }
}

pub type BoxStream = Box<dyn Stream>;

/// A connection accepted: its stream and the peer's address.
pub type Accepted = io::Result<(BoxStream, String)>;

/// Ends a connection; cheap to keep beside a stream another task owns.
pub struct Closer(Box<dyn Fn()>);

impl Closer {
    pub fn new(close: impl Fn() + 'static) -> Self {
        Self(Box::new(close))
    }

    pub fn close(&self) {
        (self.0)();
    }
}

/// How a node reaches another: connect to a `host:port`.
pub trait Network: std::fmt::Debug {
    fn connect(&self, address: &str) -> Pin<Box<dyn Future<Output = io::Result<BoxStream>>>>;
}

/// Where a core's connections come from: each with the peer's address.
pub trait Listener {
    fn accept(&self) -> Pin<Box<dyn Future<Output = Accepted> + '_>>;
}

impl Stream for TcpStream {
    fn try_clone(&self) -> io::Result<BoxStream> {
        Ok(Box::new(super::socket::duplicate(self)?))
    }

    fn closer(&self) -> Closer {
        let fd: RawFd = self.as_raw_fd();
        Closer::new(move || {
            // SAFETY: shutdown only changes the socket's state. The closer
            // lives beside the stream it came from (a session, a
            // connection), which keeps the descriptor open while it can be
            // called.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        })
    }

    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout)).map_err(io::Error::from)
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_write_timeout(self, Some(timeout)).map_err(io::Error::from)
    }
}

/// Real TCP: connects with `TCP_NODELAY` (frames are small and awaited).
#[derive(Debug)]
pub struct TcpNetwork;

impl Network for TcpNetwork {
    fn connect(&self, address: &str) -> Pin<Box<dyn Future<Output = io::Result<BoxStream>>>> {
        let parsed: Result<std::net::SocketAddr, _> = address.parse();
        Box::pin(async move {
            let addr = parsed.map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as BoxStream)
        })
    }
}

/// A core's TCP listener; accepted streams get `TCP_NODELAY`.
pub struct TcpListener(pub glommio::net::TcpListener);

impl Listener for TcpListener {
    fn accept(&self) -> Pin<Box<dyn Future<Output = Accepted> + '_>> {
        Box::pin(async move {
            let stream = self.0.accept().await.map_err(io::Error::from)?;
            let _ = stream.set_nodelay(true);
            let peer = stream
                .peer_addr()
                .map(|addr| addr.to_string())
                .unwrap_or_else(|_| "?".into());
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }
}
