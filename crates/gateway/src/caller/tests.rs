//! Roles by name, as the policy file and JWT claims spell them.

use super::*;

#[test]
fn roles_round_trip_by_name() {
    for role in Role::ALL {
        assert_eq!(Role::parse(role.as_str()), Some(role));
        let json = serde_json::to_string(&role).unwrap();
        assert_eq!(json, format!("\"{}\"", role.as_str()));
        assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
    }
    assert_eq!(Role::parse("safety"), Some(Role::Safety));
    for bad in ["", "Safety", "admin", "operator "] {
        assert_eq!(Role::parse(bad), None, "{bad:?}");
    }
}
