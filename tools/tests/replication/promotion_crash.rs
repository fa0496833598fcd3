//! A crash at each step of a promotion (`SURGE_CRASH_AT`, the node SIGKILLs itself there):
//! the standby's data directory always holds one whole epoch, the old one if the crash came
//! before the store and the new one after it. Restarted in the role that epoch says (a
//! standby before the store, the primary of the new epoch after it), the node holds every
//! write the dead primary acknowledged and takes new ones; promoted again from the old role,
//! it gets the next epoch, never a lower one.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use engine::Code;
use replicator::epoch::Epochs;
use server::telemetry::crash_point::{CRASH_AT_ENV, PROMOTION_STEPS};
use tools::serve_process::ServeProcess;

use crate::harness::*;

#[test]
fn a_crash_at_each_step_of_a_promotion_restarts_in_the_old_role_or_the_new() {
    let dir = temp_dir("promotion-crash");
    for (index, step) in PROMOTION_STEPS.iter().enumerate() {
        let root = dir.join(step);
        let sets = pair_sets("durable", "halt", &[]);
        let mut a = primary(&root.join("a"), &sets);
        let primary_at = a.replication.unwrap();
        let mut command = Command::new(exe());
        command
            .args(["standby", "--primary", &primary_at.to_string()])
            .env(CRASH_AT_ENV, step);
        let mut b = ServeProcess::launch(
            command,
            &root.join("b"),
            "127.0.0.1:0",
            "127.0.0.1:0",
            &refs(&sets),
        )
        .unwrap();
        wait_streaming(&a);
        add_sku(&a, 1, 5);
        let acknowledged = place_orders(&a, 2, 5, 300);
        a.signal(libc::SIGKILL);
        a.wait_exit(Duration::from_secs(10)).unwrap();

        // The promotion dies at `step`, with no answer.
        let answer = tools::admin_client::post(&b.http.to_string(), "/admin/promote", TOKEN);
        assert!(
            answer.as_ref().map_or(true, |(status, _)| *status != 200),
            "{step}: promoted past its crash point: {answer:?}"
        );
        let status = b.wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{step}: {status:?}");
        assert!(b.logged("crash_point"), "{step}: {:#?}", b.logs());
        drop(b);

        let stored = Epochs::load(&root.join("b"))
            .unwrap()
            .unwrap_or_else(|| panic!("{step}: no epoch survived"));
        let stored_before_crash = index >= 2;
        assert_eq!(
            stored.epoch,
            if stored_before_crash { 2 } else { 1 },
            "{step}: {stored:?}"
        );
        let b = if stored_before_crash {
            // The new role: the primary of epoch 2 (alone, so writes do not wait for a standby).
            let b = primary(&root.join("b"), &pair_sets("durable", "degrade", &[]));
            assert_eq!(health(&b)["role"], "primary", "{step}");
            assert_eq!(health(&b)["epoch"], 2, "{step}");
            b
        } else {
            // The old role: a standby (of a primary that is gone), promoted again.
            let b = ServeProcess::start_standby(exe(), &root.join("b"), primary_at, &refs(&sets))
                .unwrap();
            assert_eq!(health(&b)["role"], "standby", "{step}");
            assert_eq!(promote(&b)["epoch"], 2, "{step}");
            b
        };
        let applied = health(&b)["applied_seq"].as_u64().unwrap();
        assert!(
            applied >= acknowledged,
            "{step}: applied {applied} < acknowledged {acknowledged}"
        );
        assert_eq!(write_code(b.addr, 9, 2, 5), Code::OrderPlaced, "{step}");
    }
}
