//! URL lists (`url::parse_url_list`, `url::parse_url`) and metadata (`meta::Meta::parse`)
//! on arbitrary text (the input, lossily decoded as UTF-8), plus `Meta`'s validating
//! deserializer on the raw bytes (postcard).
//!
//! Invariants, whenever parsing succeeds:
//! - printing (`format_url_list`, `Display`) and parsing again gives an equal value
//!   (with port and transport written: the canonical form writes both), and printing is a
//!   fixed point; the written form (`ClusterUrl::written_form`) parses back to the very
//!   same value;
//! - a single URL parses as a one-element list, never contains `,`, and its strings carry
//!   no `;`, `,` or surrounding whitespace;
//! - `socket_addr` is known exactly for IP literals;
//! - parsed metadata passes `Meta::from_tokens` and every token is found by name;
//! - metadata accepted by the deserializer prints and parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nkcluster_core::meta::Meta;
use nkcluster_core::url::{ClusterUrl, Host, Written, format_url_list, parse_url, parse_url_list};

/// `u` with port and transport written, as its canonical form parses.
fn canonical(u: &ClusterUrl) -> ClusterUrl {
    ClusterUrl {
        written: Written::ALL,
        ..u.clone()
    }
}

fn clean(s: &str, what: &str) {
    assert!(
        !s.contains([';', ',']) && s.trim() == s,
        "{what} {s:?} would not print canonically"
    );
}

fn check_url(u: &ClusterUrl) {
    let printed = u.to_string();
    assert_eq!(
        parse_url(&printed),
        Ok(canonical(u)),
        "url {printed:?} does not parse back"
    );
    let written = u.written_form();
    assert_eq!(
        parse_url(&written).as_ref(),
        Ok(u),
        "written form {written:?} does not parse back"
    );
    assert_eq!(u.socket_addr().is_some(), matches!(u.host, Host::Ip(_)));
    let _ = u.remote_label();
    if let Host::Name(name) = &u.host {
        clean(name, "host");
    }
    assert!(u.path.starts_with('/'), "path {:?}", u.path);
    clean(&u.path, "path");
    if !u.transport.is_ws() {
        assert_eq!(u.path, "/", "path on a non-websocket url");
    }
    let tls = &u.tls;
    for (s, what) in [
        (&u.password, "password"),
        (&tls.certfile, "tls_certfile"),
        (&tls.keyfile, "tls_keyfile"),
        (&tls.cacertfile, "tls_cacertfile"),
        (&tls.password, "tls_password"),
    ] {
        if let Some(s) = s {
            assert!(!s.is_empty(), "empty {what}");
            clean(s, what);
        }
    }
}

fn check_meta(m: &Meta) {
    let printed = m.to_string();
    let back = Meta::parse(&printed);
    assert_eq!(back.as_ref(), Ok(m), "meta {printed:?} does not parse back");
    assert_eq!(
        back.map(|b| b.to_string()).as_deref(),
        Ok(printed.as_str()),
        "meta printing is not a fixed point"
    );
    assert_eq!(
        Meta::from_tokens(m.tokens().to_vec()).as_ref(),
        Ok(m),
        "parsed tokens fail validation"
    );
    assert_eq!(m.len(), m.tokens().len());
    assert_eq!(m.is_empty(), m.tokens().is_empty());
    for t in m.tokens() {
        assert_eq!(
            m.get(&t.name),
            Some(t),
            "token {:?} not found by name",
            t.name
        );
        for (k, v) in &t.options {
            assert_eq!(t.get(k), Some(v.as_deref()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;

    if let Ok(list) = parse_url_list(s) {
        let printed = format_url_list(&list);
        let back = parse_url_list(&printed);
        assert_eq!(
            back.as_ref(),
            Ok(&list.iter().map(canonical).collect::<Vec<_>>()),
            "url list {printed:?} does not parse back"
        );
        assert_eq!(format_url_list(&list), printed);
        assert_eq!(
            back.map(|b| format_url_list(&b)).as_deref(),
            Ok(printed.as_str()),
            "url list printing is not a fixed point"
        );
        for u in &list {
            check_url(u);
        }
    }

    if let Ok(u) = parse_url(s) {
        assert!(!s.contains(','), "a single url with a comma: {s:?}");
        assert_eq!(
            parse_url_list(s),
            Ok(vec![u.clone()]),
            "parse_url and parse_url_list disagree"
        );
        check_url(&u);
    }

    if let Ok(m) = Meta::parse(s) {
        check_meta(&m);
        // The serde form of parsed metadata round-trips through the validating decoder.
        let wire = postcard::to_allocvec(&m).expect("serializable");
        assert_eq!(postcard::from_bytes::<Meta>(&wire).as_ref(), Ok(&m));
    }

    // Whatever the deserializer accepts is valid metadata.
    if let Ok(m) = postcard::from_bytes::<Meta>(data) {
        check_meta(&m);
    }
});
