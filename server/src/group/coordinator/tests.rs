//! The coordinator machine driven by hand: answers given call by call, as etcd would.

use std::time::Duration;

use super::*;

const MS: u64 = 1_000_000;

fn machine(name: &str) -> Coordinator {
    Coordinator::new(Settings {
        name: name.into(),
        ttl: Duration::from_secs(2),
        margin: Duration::from_millis(500),
        needed: 1,
        keys: Keys::under("/surge"),
    })
}

fn running(role: Role, epoch: u64, primary_streams: bool) -> View {
    View {
        local_epoch: 0,
        local_seq: None,
        running: Some(Running {
            role,
            epoch,
            received_seq: 10,
            primary_streams,
            durable_seq: 10,
            released_seq: 10,
            synchronous: true,
            may_ack_alone: false,
            standby_detached: false,
            slots: Vec::new(),
        }),
    }
}

fn answer(m: &mut Coordinator, now: u64, a: Answer, view: &View) -> Vec<Action> {
    m.step(now, Input::Answer(Ok(a)), view)
}

fn kv(value: &str, lease: i64) -> Kv {
    Kv {
        value: value.as_bytes().to_vec(),
        create_revision: 1,
        mod_revision: 1,
        lease,
    }
}

/// Connected and joined as the leader of `epoch` with lease 7.
fn leader(epoch: u64) -> Coordinator {
    let mut m = machine("a");
    let view = View::default();
    m.step(0, Input::Tick, &view);
    answer(&mut m, MS, Answer::Lease(7), &view);
    m.step(MS, Input::Join, &view);
    m.step(MS, Input::Tick, &view);
    answer(&mut m, 2 * MS, Answer::Ttl(Some(2)), &view);
    let held = kv(&format!("node=a epoch={epoch}"), 7);
    let out = answer(&mut m, 3 * MS, Answer::Value(Some(held)), &view);
    assert!(
        out.contains(&Action::Joined(Joined::Lead { epoch })),
        "{out:?}"
    );
    m
}

#[test]
fn a_primary_whose_lease_etcd_expired_holds_everything_and_campaigns_again() {
    let mut m = leader(1);
    let view = running(Role::Primary, 1, false);
    m.step(200 * MS, Input::Tick, &view);
    let out = answer(&mut m, 201 * MS, Answer::Ttl(None), &view);
    assert!(out.contains(&Action::Deadline(Deadline::NONE)), "{out:?}");
    assert!(
        matches!(out.last(), Some(Action::Call(Call::Grant { .. }))),
        "{out:?}"
    );
    let out = answer(&mut m, 202 * MS, Answer::Lease(8), &view);
    assert!(
        matches!(out.last(), Some(Action::Call(Call::Get { .. }))),
        "the counter"
    );
    let counter = kv("node=a epoch=1", 0);
    answer(&mut m, 203 * MS, Answer::Value(Some(counter)), &view);
    let out = answer(&mut m, 204 * MS, Answer::Value(None), &view);
    let Some(Action::Call(Call::Campaign { lease, .. })) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(*lease, 8, "under the new lease");
    let out = answer(&mut m, 205 * MS, Answer::Succeeded(true), &view);
    assert!(out.contains(&Action::Promote { epoch: 2 }), "{out:?}");
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Deadline(d) if d.at_ns > 0)),
        "serves again under the new lease: {out:?}"
    );
}

#[test]
fn a_primary_whose_lease_was_lost_to_another_term_exits_to_rejoin() {
    let mut m = leader(1);
    let view = running(Role::Primary, 1, false);
    m.step(200 * MS, Input::Tick, &view);
    answer(&mut m, 201 * MS, Answer::Ttl(None), &view);
    answer(&mut m, 202 * MS, Answer::Lease(8), &view);
    answer(
        &mut m,
        203 * MS,
        Answer::Value(Some(kv("node=b epoch=2", 0))),
        &view,
    );
    let sync = kv("epoch=2 needed=1 members=", 0);
    let out = answer(&mut m, 204 * MS, Answer::Value(Some(sync)), &view);
    assert!(matches!(out.last(), Some(Action::Lost(_))), "{out:?}");
}

#[test]
fn a_standby_whose_primary_still_streams_waits_a_lease_before_it_campaigns() {
    let mut m = machine("b");
    let view = View::default();
    m.step(0, Input::Tick, &view);
    answer(&mut m, MS, Answer::Lease(9), &view);
    m.step(MS, Input::Join, &view);
    m.step(MS, Input::Tick, &view);
    answer(&mut m, 2 * MS, Answer::Ttl(Some(2)), &view);
    answer(
        &mut m,
        3 * MS,
        Answer::Value(Some(kv("node=a epoch=1", 7))),
        &view,
    );
    let record = r#"{"client":"1.1.1.1:1","http":"1.1.1.1:2","replication":"1.1.1.1:3"}"#;
    let out = answer(&mut m, 4 * MS, Answer::Value(Some(kv(record, 7))), &view);
    assert!(matches!(
        out.last(),
        Some(Action::Joined(Joined::Follow { .. }))
    ));
    let streams = running(Role::Standby, 1, true);
    let round = |m: &mut Coordinator, at_ms: u64, view: &View| {
        m.step(at_ms * MS, Input::Tick, view);
        answer(m, (at_ms + 1) * MS, Answer::Ttl(Some(2)), view);
        answer(m, (at_ms + 2) * MS, Answer::Value(None), view)
    };
    let out = round(&mut m, 200, &streams);
    assert!(matches!(out.last(), Some(Action::Withheld(_))), "{out:?}");
    let out = round(&mut m, 1_000, &streams);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Call(_))),
        "still waits: {out:?}"
    );
    // A lease later it campaigns anyway; and at once when the primary goes silent.
    let out = round(&mut m, 2_300, &streams);
    assert!(
        matches!(out.last(), Some(Action::Call(Call::Get { .. }))),
        "{out:?}"
    );
}
