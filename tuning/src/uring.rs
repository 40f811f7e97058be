//! Is io_uring usable here, and does the kernel have every operation the
//! node (glommio) submits? Probed with the `io-uring` crate.

use io_uring::{opcode, IoUring, Probe};

use crate::facts::UringFacts;

/// Operations glommio submits for Stratum: DMA file I/O, fsync, sockets,
/// polling, timers, cancellation.
pub const REQUIRED: &[(u8, &str)] = &[
    (opcode::Read::CODE, "read"),
    (opcode::Write::CODE, "write"),
    (opcode::Readv::CODE, "readv"),
    (opcode::Writev::CODE, "writev"),
    (opcode::Fsync::CODE, "fsync"),
    (opcode::PollAdd::CODE, "poll_add"),
    (opcode::PollRemove::CODE, "poll_remove"),
    (opcode::Timeout::CODE, "timeout"),
    (opcode::TimeoutRemove::CODE, "timeout_remove"),
    (opcode::AsyncCancel::CODE, "async_cancel"),
    (opcode::LinkTimeout::CODE, "link_timeout"),
    (opcode::Accept::CODE, "accept"),
    (opcode::Connect::CODE, "connect"),
    (opcode::Send::CODE, "send"),
    (opcode::Recv::CODE, "recv"),
    (opcode::SendMsg::CODE, "sendmsg"),
    (opcode::RecvMsg::CODE, "recvmsg"),
    (opcode::OpenAt::CODE, "openat"),
    (opcode::Close::CODE, "close"),
    (opcode::Statx::CODE, "statx"),
    (opcode::Fallocate::CODE, "fallocate"),
];

pub fn probe() -> UringFacts {
    let ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(err) => return UringFacts::Unusable(err.to_string()),
    };
    let mut probe = Probe::new();
    if let Err(err) = ring.submitter().register_probe(&mut probe) {
        return UringFacts::Unusable(format!("IORING_REGISTER_PROBE failed: {err}"));
    }
    let supported = (0..=u8::MAX)
        .filter(|code| probe.is_supported(*code))
        .count();
    let missing = REQUIRED
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| (*name).to_owned())
        .collect();
    UringFacts::Usable { supported, missing }
}
