//! Waiting on a [`PolicyHead`] by its advance counter (never by sleeping).

use std::time::Duration;

use crate::PolicyHead;

/// Waits until `head` has completed `n` more advances (successful or not) than it had
/// when called; panics if that takes longer than `deadline` (a head that stopped
/// advancing by itself) or if its task is gone.
pub async fn head_advances(head: &PolicyHead, n: u64, deadline: Duration) {
    let mut rx = head.advances();
    let start = *rx.borrow_and_update();
    tokio::time::timeout(deadline, async {
        while *rx.borrow_and_update() < start + n {
            rx.changed().await.expect("policy head task alive");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the policy head's next {n} advances must end by themselves within {deadline:?}")
    });
}
