use super::*;
use crate::crypto::SigningKey;

struct Person {
    key: SigningKey,
    signer: Signer,
}

fn person(name: &str, seed: u8, officer: bool, approver: bool, emergency: bool) -> Person {
    let key = SigningKey::from_seed(&[seed; 32]).unwrap();
    let signer = Signer { name: name.into(), public_key: key.public_key(), officer, approver, emergency_approver: emergency, revoked: false };
    Person { key, signer }
}

fn request(participants: &[&str], emergency: bool) -> AccessRequest {
    AccessRequest {
        item: ItemId::from_bytes([5; 16]),
        action: Action::Retrieve,
        purpose: "investigation".into(),
        approval_doc: "DOC-1".into(),
        participants: participants.iter().map(|s| s.to_string()).collect(),
        emergency,
        expires_at_ms: 1_000,
        nonce: "00".repeat(16),
        max_fetches: 1,
    }
}

fn sign(p: &Person, req: &AccessRequest) -> String {
    BASE64.encode(p.key.sign(&req.signing_bytes().unwrap()))
}

fn world() -> Vec<Person> {
    vec![
        person("alice", 1, true, false, false),
        person("bob", 2, true, false, false),
        person("carol", 3, false, true, false),
        person("erin", 4, false, false, true),
        person("olga", 5, true, true, false),
    ]
}

fn lookup(people: &[Person]) -> impl Fn(&str) -> Option<Signer> + '_ {
    move |n| people.iter().find(|p| p.signer.name == n).map(|p| p.signer.clone())
}

fn granted(req: &AccessRequest, sigs: &Signatures, people: &[Person]) -> bool {
    matches!(evaluate(req, sigs, &lookup(people)), Ok(Standing::Granted(_)))
}

#[test]
fn two_officers_and_an_approver_form_a_grant() {
    let people = world();
    let req = request(&["alice", "bob"], false);
    let mut sigs = Signatures::new();
    sigs.insert("alice".into(), sign(&people[0], &req));
    assert!(!granted(&req, &sigs, &people));
    sigs.insert("bob".into(), sign(&people[1], &req));
    assert!(!granted(&req, &sigs, &people), "no approver yet");
    sigs.insert("carol".into(), sign(&people[2], &req));
    assert!(granted(&req, &sigs, &people));
}

#[test]
fn one_officer_alone_or_twice_is_refused() {
    assert!(request(&["alice"], false).validate().is_err(), "art. 18(1): at least two");
    assert!(request(&["alice", "alice"], false).validate().is_err(), "a person never counts twice");
}

#[test]
fn a_participant_never_counts_as_the_approver() {
    let people = world();
    // olga is an officer and an approver; as a participant her signature is a participant's only.
    let req = request(&["alice", "olga"], false);
    let mut sigs = Signatures::new();
    sigs.insert("alice".into(), sign(&people[0], &req));
    sigs.insert("olga".into(), sign(&people[4], &req));
    assert!(!granted(&req, &sigs, &people));
    sigs.insert("carol".into(), sign(&people[2], &req));
    assert!(granted(&req, &sigs, &people));
}

#[test]
fn an_emergency_needs_an_emergency_approver() {
    let people = world();
    let req = request(&["alice", "bob"], true);
    let mut sigs = Signatures::new();
    sigs.insert("alice".into(), sign(&people[0], &req));
    sigs.insert("bob".into(), sign(&people[1], &req));
    sigs.insert("carol".into(), sign(&people[2], &req));
    assert!(!granted(&req, &sigs, &people), "an ordinary approver does not approve an emergency");
    sigs.insert("erin".into(), sign(&people[3], &req));
    assert!(granted(&req, &sigs, &people));
}

#[test]
fn a_signature_for_another_request_item_or_action_does_not_count() {
    let people = world();
    let req = request(&["alice", "bob"], false);
    let mut other_item = req.clone();
    other_item.item = ItemId::from_bytes([6; 16]);
    let mut other_action = req.clone();
    other_action.action = Action::Copy;
    for other in [other_item, other_action] {
        let mut sigs = Signatures::new();
        sigs.insert("alice".into(), sign(&people[0], &req));
        sigs.insert("bob".into(), sign(&people[1], &other));
        sigs.insert("carol".into(), sign(&people[2], &req));
        assert!(!granted(&req, &sigs, &people));
    }
}

#[test]
fn a_revoked_signer_stops_counting() {
    let mut people = world();
    let req = request(&["alice", "bob"], false);
    let mut sigs = Signatures::new();
    for (n, i) in [("alice", 0), ("bob", 1), ("carol", 2)] {
        sigs.insert(n.into(), sign(&people[i], &req));
    }
    assert!(granted(&req, &sigs, &people));
    people[2].signer.revoked = true;
    assert!(!granted(&req, &sigs, &people), "the revoked approver no longer counts");
    people[2].signer.revoked = false;
    people[1].signer.revoked = true;
    assert!(evaluate(&req, &sigs, &lookup(&people)).is_err(), "a revoked participant cannot take part");
}

/// The rules again, written as plainly as possible, against random worlds.
#[test]
fn evaluate_agrees_with_a_reference_model() {
    let names = ["p0", "p1", "p2", "p3", "p4", "p5"];
    for round in 0..3000u32 {
        let r = crate::crypto::random_bytes::<32>().unwrap();
        let bit = |i: usize| r[i % 32] >> (i / 32) & 1 == 1;
        let people: Vec<Person> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut p = person(n, i as u8 + 10, bit(i * 4), bit(i * 4 + 1), bit(i * 4 + 2));
                p.signer.revoked = bit(i * 4 + 3) && bit(i * 4 + 40);
                p
            })
            .collect();
        let n_part = 2 + (r[31] as usize % 3);
        let participants: Vec<&str> = names[..n_part].to_vec();
        let req = request(&participants, bit(200));
        let mut sigs = Signatures::new();
        for (i, p) in people.iter().enumerate() {
            match r[(i + 7) % 32] % 4 {
                0 => {}
                1 => {
                    sigs.insert(p.signer.name.clone(), BASE64.encode([0u8; 64]));
                }
                _ => {
                    sigs.insert(p.signer.name.clone(), sign(p, &req));
                }
            }
        }
        // Reference: every participant an unrevoked officer who signed validly, and
        // some non-participant unrevoked (emergency-)approver who signed validly.
        let ok_sig = |p: &Person| sigs.get(&p.signer.name).is_some_and(|s| *s == sign(p, &req));
        let participants_ok = people[..n_part].iter().all(|p| p.signer.officer && !p.signer.revoked && ok_sig(p));
        let approver_ok = people[n_part..]
            .iter()
            .any(|p| !p.signer.revoked && (if req.emergency { p.signer.emergency_approver } else { p.signer.approver }) && ok_sig(p));
        let want = participants_ok && approver_ok;
        assert_eq!(granted(&req, &sigs, &people), want, "round {round}");
    }
}
