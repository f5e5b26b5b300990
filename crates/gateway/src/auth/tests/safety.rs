//! The `safety` role on the agents' RPCs: from a JWT claim, an observer (reads only); its
//! powers are the Fleet service's.

use super::*;

#[tokio::test]
async fn safety_jwt_reads_but_may_not_act() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticator(Some(jwt_config(&dir, None)));
    let token = hs256(claims(
        json!({"sub": "control-room", "role": "safety", "beamlines": ["*"]}),
    ));
    for method in ["Describe", "GetTask", "Subscribe"] {
        let response = call(&auth, method, "7.0.1", Some(&bearer(&token)), &[]).await;
        assert!(rejection(&response).is_none(), "{method}");
        assert_eq!(response.headers()["x-caller"], "control-room");
        assert_eq!(response.headers()["x-role"], "safety");
    }
    for method in ["Execute", "Cancel"] {
        let response = call(&auth, method, "7.0.1", Some(&bearer(&token)), &[]).await;
        let message = assert_rejected(&response, Code::PermissionDenied);
        for part in ["control-room", "safety", "7.0.1", method] {
            assert!(message.contains(part), "{message}");
        }
    }
}

#[test]
fn safety_may_call_the_reads_only() {
    for rpc in Rpc::ALL {
        assert_eq!(role_may_call(Role::Safety, rpc), rpc.is_read(), "{rpc:?}");
        assert_eq!(
            role_may_call(Role::Safety, rpc),
            role_may_call(Role::Observer, rpc)
        );
    }
}
