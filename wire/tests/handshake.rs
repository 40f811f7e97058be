//! The connector's handshake, driven without sockets: each answer a node
//! may give, through real frames.

use stratum_wire::auth::ClusterSecret;
use stratum_wire::handshake::{hello, Connector, HandshakeError, Next};
use stratum_wire::message::{
    AuthOk, ErrorCode, ErrorReply, HelloAck, PeerRole, Welcome, PROTOCOL_REVISION,
};
use stratum_wire::{Frame, FrameDecoder, FrameEncoder, FrameLimits, Message};

const NONCE: [u8; 32] = [3; 32];
const CHALLENGE: [u8; 32] = [9; 32];

/// `message` as the connector would receive it: encoded, then decoded.
fn frame(message: &Message) -> Frame {
    let mut bytes = Vec::new();
    FrameEncoder::new(FrameLimits::default())
        .encode(&mut bytes, 1, message, &[])
        .expect("encode");
    let mut decoder = FrameDecoder::new(FrameLimits::default());
    let mut input = &bytes[..];
    decoder
        .decode(&mut input)
        .expect("decode")
        .expect("a whole frame")
}

fn welcome(challenge: Option<[u8; 32]>) -> Message {
    Message::Welcome(Welcome {
        protocol_version: PROTOCOL_REVISION,
        node_id: 4,
        shard_id: 1,
        shard_count: 2,
        topology_epoch: 7,
        auth_challenge: challenge,
        max_object_bytes: 1 << 20,
        codecs: 0b11,
        dictionaries: vec![5],
        dictionary: 5,
    })
}

fn start(secret: Option<ClusterSecret>) -> Connector {
    let (connector, first) = Connector::start(
        hello(PeerRole::Client, None, 0, "test".into(), NONCE),
        secret,
    );
    assert!(
        matches!(first, Message::Hello(ref h) if h.auth_nonce == NONCE && h.protocol_version == PROTOCOL_REVISION)
    );
    connector
}

fn secret(bytes: &[u8]) -> ClusterSecret {
    ClusterSecret::new(bytes).expect("secret")
}

#[test]
fn a_welcome_without_a_challenge_ends_it() {
    let mut connector = start(None);
    match connector.receive(frame(&welcome(None)).message()) {
        Ok(Next::Done(greeting)) => {
            assert_eq!(
                (greeting.node_id, greeting.shard_id, greeting.revision),
                (4, 1, PROTOCOL_REVISION)
            );
            assert_eq!(greeting.max_object_bytes, Some(1 << 20));
            assert_eq!(greeting.dictionaries, vec![5]);
        }
        other => panic!("expected the greeting, got {other:?}"),
    }
}

#[test]
fn a_first_release_hello_ack_reads_as_revision_one() {
    let mut connector = start(None);
    let ack = Message::HelloAck(HelloAck {
        protocol_version: 1,
        node_id: 2,
        shard_id: 0,
        shard_count: 1,
        topology_epoch: 0,
        auth_challenge: None,
    });
    match connector.receive(frame(&ack).message()) {
        Ok(Next::Done(greeting)) => {
            assert_eq!(greeting.revision, 1);
            assert_eq!(greeting.max_object_bytes, None);
        }
        other => panic!("expected the greeting, got {other:?}"),
    }
}

#[test]
fn a_challenge_is_answered_and_the_nodes_proof_checked() {
    let shared = secret(b"a cluster secret of enough length");
    let mut connector = start(Some(shared.clone()));
    let proof = match connector.receive(frame(&welcome(Some(CHALLENGE))).message()) {
        Ok(Next::Send(Message::AuthProof(proof))) => proof,
        other => panic!("expected a proof to send, got {other:?}"),
    };
    assert!(shared.verify_client(&CHALLENGE, &NONCE, &proof.mac));
    let ok = Message::AuthOk(AuthOk {
        mac: shared.node_proof(&NONCE, &CHALLENGE),
    });
    assert!(matches!(
        connector.receive(frame(&ok).message()),
        Ok(Next::Done(greeting)) if greeting.node_id == 4
    ));
}

#[test]
fn a_node_with_another_secret_is_refused() {
    let mut connector = start(Some(secret(b"a cluster secret of enough length")));
    connector
        .receive(frame(&welcome(Some(CHALLENGE))).message())
        .expect("proof");
    let other = secret(b"another secret, also long enough");
    let ok = Message::AuthOk(AuthOk {
        mac: other.node_proof(&NONCE, &CHALLENGE),
    });
    let err = connector.receive(frame(&ok).message()).unwrap_err();
    assert_eq!(err, HandshakeError::WrongProof);
    assert!(err.is_unauthorized());
}

#[test]
fn a_challenge_without_a_secret_fails_as_unauthorized() {
    let mut connector = start(None);
    let err = connector
        .receive(frame(&welcome(Some(CHALLENGE))).message())
        .unwrap_err();
    assert_eq!(err, HandshakeError::SecretMissing);
    assert!(err.is_unauthorized());
}

#[test]
fn an_error_answer_or_anything_else_ends_it() {
    let mut connector = start(None);
    let refusal = Message::Error(ErrorReply::new(ErrorCode::Unauthorized, "bad proof", 0));
    let err = connector.receive(frame(&refusal).message()).unwrap_err();
    assert!(
        matches!(&err, HandshakeError::Refused { code: ErrorCode::Unauthorized, detail } if detail == "bad proof")
    );

    let mut connector = start(None);
    let err = connector
        .receive(frame(&Message::Ping(stratum_wire::message::Ping { nonce: 1 })).message());
    assert!(
        matches!(err, Err(HandshakeError::Unexpected { .. })),
        "{err:?}"
    );
    // Over is over.
    assert!(connector.receive(frame(&welcome(None)).message()).is_err());
}
