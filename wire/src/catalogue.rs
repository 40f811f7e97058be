//! The message catalogue: each kind's number, name, struct, and whether it
//! carries a payload — written once, expanded into [`MessageKind`] (the header
//! byte), [`Message`] (owned) and [`MessageRef`] (zero-copy view).
//!
//! The header's kind byte is the only discriminant: a frame's archive is the
//! bare message struct, so a `Get` archive is its 32-byte id and nothing
//! more. (An rkyv enum would archive every message at the size of the largest
//! variant.) Numbers are part of the format: never reuse or renumber one.

use rkyv::rancor;
use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;

use crate::message::*;

macro_rules! catalogue {
    ($( $variant:ident($ty:ident) = $number:literal, $name:literal, payload: $payload:literal; )*) => {
        /// The message kind byte in the frame header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum MessageKind {
            $( $variant = $number, )*
        }

        impl MessageKind {
            pub const ALL: &'static [MessageKind] = &[ $( Self::$variant, )* ];

            pub fn from_u8(byte: u8) -> Option<Self> {
                match byte {
                    $( $number => Some(Self::$variant), )*
                    _ => None,
                }
            }

            /// Short lower-case name, for logs and metric labels.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $name, )*
                }
            }

            /// Kinds whose frame may have a non-empty payload segment (object
            /// bytes). Any other kind with a payload is rejected, so a peer
            /// cannot make us buffer megabytes behind a ping.
            pub fn carries_payload(self) -> bool {
                match self {
                    $( Self::$variant => $payload, )*
                }
            }
        }

        /// One protocol message, owned.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $( $variant($ty), )*
        }

        /// One protocol message, read in place from a validated archive.
        #[derive(Debug, Clone, Copy)]
        pub enum MessageRef<'a> {
            $( $variant(&'a rkyv::Archived<$ty>), )*
        }

        impl Message {
            pub fn kind(&self) -> MessageKind {
                match self {
                    $( Self::$variant(_) => MessageKind::$variant, )*
                }
            }

            /// Appends the archive of the inner struct to `out`.
            pub(crate) fn archive_into(
                &self,
                out: &mut AlignedVec,
                arena: &mut Arena,
            ) -> Result<(), rancor::Error> {
                match self {
                    $( Self::$variant(inner) => {
                        rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
                            inner, out, arena.acquire(),
                        )?;
                    } )*
                }
                Ok(())
            }
        }

        impl<'a> MessageRef<'a> {
            pub fn kind(&self) -> MessageKind {
                match self {
                    $( Self::$variant(_) => MessageKind::$variant, )*
                }
            }

            /// Validates `bytes` (16-byte aligned) as the archive of `kind`.
            pub(crate) fn check(kind: MessageKind, bytes: &'a [u8]) -> Result<Self, rancor::Error> {
                Ok(match kind {
                    $( MessageKind::$variant => {
                        Self::$variant(rkyv::access::<rkyv::Archived<$ty>, rancor::Error>(bytes)?)
                    } )*
                })
            }

            /// # Safety
            /// `bytes` must have passed [`MessageRef::check`] for this `kind`
            /// and be unchanged since.
            pub(crate) unsafe fn new_unchecked(kind: MessageKind, bytes: &'a [u8]) -> Self {
                match kind {
                    // SAFETY: the caller guarantees `bytes` was validated as
                    // exactly this archived type.
                    $( MessageKind::$variant => {
                        Self::$variant(unsafe { rkyv::access_unchecked::<rkyv::Archived<$ty>>(bytes) })
                    } )*
                }
            }

            /// Deserializes into an owned [`Message`].
            pub fn to_owned_message(&self) -> Result<Message, rancor::Error> {
                Ok(match self {
                    $( Self::$variant(archived) => {
                        Message::$variant(rkyv::deserialize::<$ty, rancor::Error>(*archived)?)
                    } )*
                })
            }
        }

        $(
            impl From<$ty> for Message {
                fn from(inner: $ty) -> Self {
                    Self::$variant(inner)
                }
            }
        )*
    };
}

catalogue! {
    Hello(Hello) = 1, "hello", payload: false;
    HelloAck(HelloAck) = 2, "hello_ack", payload: false;
    AuthProof(AuthProof) = 3, "auth_proof", payload: false;
    AuthOk(AuthOk) = 4, "auth_ok", payload: false;
    Put(Put) = 10, "put", payload: true;
    PutAck(PutAck) = 11, "put_ack", payload: false;
    Get(Get) = 12, "get", payload: false;
    GetOk(GetOk) = 13, "get_ok", payload: true;
    Has(Has) = 14, "has", payload: false;
    HasResult(HasResult) = 15, "has_result", payload: false;
    Delete(Delete) = 16, "delete", payload: false;
    DeleteAck(DeleteAck) = 17, "delete_ack", payload: false;
    BatchGet(BatchGet) = 20, "batch_get", payload: false;
    BatchItem(BatchItem) = 21, "batch_item", payload: true;
    BatchEnd(BatchEnd) = 22, "batch_end", payload: false;
    Replicate(Replicate) = 30, "replicate", payload: true;
    ReplicateAck(ReplicateAck) = 31, "replicate_ack", payload: false;
    Ping(Ping) = 40, "ping", payload: false;
    Pong(Pong) = 41, "pong", payload: false;
    Stats(Stats) = 42, "stats", payload: false;
    StatsReply(StatsReply) = 43, "stats_reply", payload: false;
    Error(ErrorReply) = 50, "error", payload: false;
    // Appended in protocol version 1 before its first release; catalogue
    // order is the fixture's order, so new kinds always go last.
    GetTopology(GetTopology) = 44, "get_topology", payload: false;
    TopologyReply(TopologyReply) = 45, "topology_reply", payload: false;
    ListIds(ListIds) = 46, "list_ids", payload: false;
    IdList(IdList) = 47, "id_list", payload: false;
    // Anti-entropy (node to node), added after the first release: an older
    // node closes a connection that sends these (unknown kind), which the
    // repair driver reads as "peer does not repair yet".
    SyncDigests(SyncDigests) = 60, "sync_digests", payload: false;
    SyncDigestsReply(SyncDigestsReply) = 61, "sync_digests_reply", payload: false;
    SyncList(SyncList) = 62, "sync_list", payload: false;
    SyncListReply(SyncListReply) = 63, "sync_list_reply", payload: false;
    Repair(Repair) = 64, "repair", payload: false;
    RepairStarted(RepairStarted) = 65, "repair_started", payload: false;
    // Protocol revision 2: the answer to a hello of revision 2 or later.
    Welcome(Welcome) = 66, "welcome", payload: false;
    GetDictionary(GetDictionary) = 67, "get_dictionary", payload: false;
    DictionaryBytes(DictionaryBytes) = 68, "dictionary", payload: true;
    InstallDictionary(InstallDictionary) = 69, "install_dictionary", payload: true;
    DictionaryInstalled(DictionaryInstalled) = 70, "dictionary_installed", payload: false;
    ReportCorrupt(ReportCorrupt) = 71, "report_corrupt", payload: false;
    CorruptReported(CorruptReported) = 72, "corrupt_reported", payload: false;
}

impl MessageKind {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
