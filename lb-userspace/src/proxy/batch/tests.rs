//! The batching socket over loopback, in a namespace of the test's own.
use super::*;
use crate::test_netns;
use std::io::Read;
use tokio::io::AsyncWriteExt;

/// A batching socket and its peer (a plain blocking socket, non-blocking
/// while the test looks whether anything arrived).
async fn pair() -> (BatchedTcp, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let ours = TcpStream::connect(address).await.expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    (BatchedTcp::new(ours), peer)
}

/// What the peer can read right now.
fn readable_now(peer: &mut std::net::TcpStream) -> Vec<u8> {
    peer.set_nonblocking(true).expect("nonblocking");
    let mut got = vec![0u8; 64 * 1024];
    let n = match peer.read(&mut got) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => panic!("read: {e}"),
    };
    peer.set_nonblocking(false).expect("blocking");
    got.truncate(n);
    got
}

/// The flusher runs once every task woken before it has had its turn.
async fn let_the_pass_end() {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn the_writes_of_a_pass_go_out_together_at_its_end() {
    test_netns::block_on(|| async {
        let mut pairs = Vec::new();
        for _ in 0..3 {
            pairs.push(pair().await);
        }
        assert!(pairs[0].0.sends_at_pass_end(), "io_uring is there");
        let (submissions, sends) = counts();
        for (i, (ours, _)) in pairs.iter_mut().enumerate() {
            ours.write_all(format!("message {i}").as_bytes())
                .await
                .expect("handed over");
        }
        for (_, peer) in pairs.iter_mut() {
            assert_eq!(readable_now(peer), b"", "nothing before the pass ends");
        }
        let_the_pass_end().await;
        for (i, (_, peer)) in pairs.iter_mut().enumerate() {
            let mut got = vec![0u8; 9];
            peer.read_exact(&mut got).expect("message");
            assert_eq!(got, format!("message {i}").as_bytes());
        }
        let (submissions_now, sends_now) = counts();
        assert_eq!(sends_now - sends, 3);
        assert_eq!(submissions_now - submissions, 1, "one system call for all");
    })
}

#[test]
fn bulk_data_to_an_idle_connection_goes_out_at_once() {
    test_netns::block_on(|| async {
        let (mut ours, mut peer) = pair().await;
        let _ = usable_here();
        let sends = counts().1;
        let bulk = vec![7u8; DIRECT_MIN];
        ours.write_all(&bulk).await.expect("written");
        let mut got = vec![0u8; DIRECT_MIN];
        peer.read_exact(&mut got).expect("bulk");
        assert_eq!(got, bulk);
        assert_eq!(counts().1, sends, "not through the ring");
    })
}

#[test]
fn more_than_the_socket_takes_arrives_whole_and_in_order() {
    test_netns::block_on(|| async {
        let (mut ours, mut peer) = pair().await;
        const TOTAL: usize = 8_000_000;
        let reader = std::thread::spawn(move || {
            // Late, so that sends come back short and wait for room.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut got = Vec::with_capacity(TOTAL);
            peer.read_to_end(&mut got).expect("read");
            got
        });
        let mut sent = 0usize;
        while sent < TOTAL {
            // Small writes, each batched; their bytes count up.
            let piece: Vec<u8> = (sent..sent + 1000).map(|i| (i % 251) as u8).collect();
            ours.write_all(&piece).await.expect("written");
            sent += piece.len();
        }
        ours.shutdown().await.expect("drained, then FIN");
        let got = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
            .await
            .expect("join");
        assert_eq!(got.len(), TOTAL);
        assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    })
}

#[test]
fn a_dropped_socket_still_sends_what_it_was_given_then_closes() {
    test_netns::block_on(|| async {
        let (mut ours, mut peer) = pair().await;
        ours.write_all(b"last words").await.expect("handed over");
        drop(ours);
        let_the_pass_end().await;
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("read to the FIN");
        assert_eq!(got, b"last words");
    })
}

#[test]
fn a_failed_send_reaches_the_writer() {
    test_netns::block_on(|| async {
        let (mut ours, peer) = pair().await;
        // The peer resets the connection (linger 0).
        socket2::SockRef::from(&peer)
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("linger");
        drop(peer);
        let mut failed = None;
        for _ in 0..100 {
            if let Err(error) = ours.write_all(b"ping").await {
                failed = Some(error);
                break;
            }
            let_the_pass_end().await;
        }
        let error = failed.expect("a later write fails");
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{error}"
        );
    })
}

#[test]
fn writes_are_direct_off_a_worker_runtime() {
    test_netns::block_on_off_worker(|| async {
        let (mut ours, mut peer) = pair().await;
        assert!(!ours.sends_at_pass_end());
        ours.write_all(b"now").await.expect("written");
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).expect("at once");
        assert_eq!(&got, b"now");
    })
}

#[test]
fn more_sends_in_a_pass_than_the_ring_holds_all_go_out() {
    test_netns::block_on(|| async {
        const CONNECTIONS: usize = 300;
        assert!(CONNECTIONS > RING_ENTRIES as usize);
        let mut pairs = Vec::new();
        for _ in 0..CONNECTIONS {
            pairs.push(pair().await);
        }
        let (submissions, sends) = counts();
        for (i, (ours, _)) in pairs.iter_mut().enumerate() {
            ours.write_all(format!("{i:04}").as_bytes())
                .await
                .expect("handed over");
        }
        let_the_pass_end().await;
        for (i, (_, peer)) in pairs.iter_mut().enumerate() {
            let mut got = [0u8; 4];
            peer.read_exact(&mut got).expect("message");
            assert_eq!(&got, format!("{i:04}").as_bytes());
        }
        let (submissions_now, sends_now) = counts();
        assert_eq!(sends_now - sends, CONNECTIONS as u64);
        assert_eq!(
            submissions_now - submissions,
            2,
            "a full ring, then the rest"
        );
    })
}
