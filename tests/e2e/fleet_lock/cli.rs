//! `beamline-mesh halt`, `resume`, `lock` and `unlock` against the stack's gateway: one line on
//! stdout for what happened, exit 0; the gateway's refusal as `error: <code>: <message>` on
//! stderr, exit 1; usage errors exit 2 before anything is sent.

use std::time::Duration;

use crate::support::agent::{run_to_exit, Exited};
use crate::support::policy::*;

use super::{halt_key, lock_key, stack, LOCKED, OTHER};

/// How long one command may take (it answers once the gateway enforces the change: well
/// under a second).
const COMMAND_BOUND: Duration = Duration::from_secs(30);

/// Runs `beamline-mesh <args> --gateway <the stack's> --token <token>` to its exit.
async fn run(s: &PolicyStack, token: &str, args: &[&str]) -> Exited {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend([
        "--gateway".into(),
        s.gateway.endpoint(),
        "--token".into(),
        token.into(),
    ]);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        run_to_exit(&args, COMMAND_BOUND)
    })
    .await
    .expect("the command's thread")
}

#[track_caller]
fn expect(out: &Exited, code: i32, stdout: &[&str], stderr: &[&str]) {
    let shown = format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.status.code(), Some(code), "{shown}");
    for part in stdout {
        assert!(out.stdout.contains(part), "stdout lacks {part:?}\n{shown}");
    }
    for part in stderr {
        assert!(out.stderr.contains(part), "stderr lacks {part:?}\n{shown}");
    }
    if code == 0 {
        assert_eq!(out.stdout.lines().count(), 1, "one line\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_print_one_line_and_exit_non_zero_on_refusal() {
    let s = stack().await;
    let (team, ops) = (TEAM_531_KEY, OPS_KEY);
    let safety = safety_token();

    let out = run(
        &s,
        team,
        &["halt", "--beamline", LOCKED, "--reason", "vacuum alarm"],
    )
    .await;
    expect(
        &out,
        0,
        &["halted 5.3.1 (by team-531 at ", "): vacuum alarm"],
        &[],
    );
    assert!(control_record(s.registry(), &halt_key(LOCKED))
        .await
        .is_some());
    let out = run(&s, team, &["resume", "--beamline", LOCKED]).await;
    expect(&out, 0, &["resumed 5.3.1"], &[]);
    assert!(control_record(s.registry(), &halt_key(LOCKED))
        .await
        .is_none());

    let out = run(&s, team, &["halt", "--beamline", OTHER, "--reason", "x"]).await;
    expect(
        &out,
        1,
        &[],
        &["error: PermissionDenied: ", "team-531", "7.0.1", "Halt"],
    );
    let out = run(&s, team, &["halt", "--all", "--reason", "x"]).await;
    expect(
        &out,
        1,
        &[],
        &["error: PermissionDenied: ", "every beamline"],
    );
    let out = run(&s, &safety, &["halt", "--all", "--reason", "fire drill"]).await;
    expect(
        &out,
        0,
        &[
            "halted every beamline (by control-room at ",
            "): fire drill",
        ],
        &[],
    );
    let out = run(&s, team, &["resume", "--beamline", LOCKED]).await;
    expect(
        &out,
        0,
        &["resumed 5.3.1; every beamline is still halted (by control-room"],
        &[],
    );
    let out = run(&s, &safety, &["resume", "--all"]).await;
    expect(&out, 0, &["resumed every beamline"], &[]);
    assert!(control_records(s.registry()).await.is_empty());

    let out = run(
        &s,
        team,
        &[
            "lock",
            "--beamline",
            LOCKED,
            "--note",
            "aligning",
            "--for",
            "90m",
        ],
    )
    .await;
    expect(
        &out,
        0,
        &["locked 5.3.1 for team-531 until ", ": aligning"],
        &[],
    );
    let out = run(&s, ops, &["lock", "--beamline", LOCKED, "--note", "mine"]).await;
    expect(
        &out,
        1,
        &[],
        &["error: FailedPrecondition: ", "\"team-531\"", "aligning"],
    );
    let out = run(&s, ops, &["unlock", "--beamline", LOCKED]).await;
    expect(&out, 1, &[], &["error: PermissionDenied: ", "team-531"]);
    let before = control_records(s.registry()).await;
    let out = run(
        &s,
        team,
        &["lock", "--beamline", LOCKED, "--note", "x", "--for", "25h"],
    )
    .await;
    expect(&out, 1, &[], &["error: InvalidArgument: ", "25h", "24h"]);
    let out = run(&s, team, &["lock", "--beamline", LOCKED, "--note", ""]).await;
    expect(&out, 1, &[], &["error: InvalidArgument: ", "note"]);
    let out = run(&s, ops, &["lock", "--beamline", "9.9.9", "--note", "x"]).await;
    expect(&out, 1, &[], &["error: NotFound: ", "9.9.9"]);
    // Refused locally by the flags (a bad id, no scope): usage errors.
    let out = run(&s, team, &["lock", "--beamline", "5..3", "--note", "x"]).await;
    expect(&out, 2, &[], &["5..3"]);
    let out = run(&s, team, &["halt", "--reason", "x"]).await;
    expect(&out, 2, &[], &["--beamline"]);
    assert_eq!(control_records(s.registry()).await, before);

    let out = run(&s, team, &["unlock", "--beamline", LOCKED]).await;
    expect(
        &out,
        0,
        &["unlocked 5.3.1 (was held by team-531 until ", ": aligning)"],
        &[],
    );
    assert!(control_record(s.registry(), &lock_key(LOCKED))
        .await
        .is_none());
    let out = run(&s, team, &["unlock", "--beamline", LOCKED]).await;
    expect(&out, 0, &["5.3.1 was not locked"], &[]);

    // No gateway there: UNAVAILABLE, exit 1.
    let out = tokio::task::spawn_blocking(|| {
        run_to_exit(
            &[
                "lock",
                "--beamline",
                "5.3.1",
                "--note",
                "x",
                "--gateway",
                "127.0.0.1:1",
            ],
            COMMAND_BOUND,
        )
    })
    .await
    .unwrap();
    expect(
        &out,
        1,
        &[],
        &["error: Unavailable: cannot connect to http://127.0.0.1:1"],
    );
}
