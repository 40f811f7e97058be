//! `stratum-tune`: what is wrong with a host for Stratum and how to fix it,
//! what its disk can do, and the settings that fit it.
//!
//! - [`host`] reads /proc and /sys (under a root tests point at captured
//!   samples); [`parse`] parses their formats.
//! - [`facts`] gathers what `check` judges, with the live probes:
//!   [`uring`] (io_uring and its operations), [`direct`] (O_DIRECT).
//! - [`checks`] turns facts into OK / WARN / FAIL lines with fixes.
//! - [`iotune`] measures the device with the node's own DMA I/O and writes
//!   the I/O properties file the node reads.
//! - [`recommend`] prints sysctl settings, limits and a systemd unit.

pub mod checks;
pub mod direct;
pub mod facts;
pub mod host;
pub mod iotune;
pub mod parse;
pub mod recommend;
pub mod uring;
