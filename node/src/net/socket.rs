//! Socket helpers shared by served connections and peer links.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd};

use glommio::net::TcpStream;

/// A second glommio stream on a duplicate of `stream`'s socket (server
/// connections and peer links both split their sockets this way).
pub fn duplicate(stream: &TcpStream) -> std::io::Result<TcpStream> {
    // SAFETY: the descriptor is open for as long as `stream` lives, which
    // spans this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let owned = borrowed.try_clone_to_owned()?;
    // SAFETY: `owned` is a fresh descriptor of a connected TCP socket that we
    // own; ownership moves into the new stream.
    Ok(unsafe { TcpStream::from_raw_fd(owned.into_raw_fd()) })
}
