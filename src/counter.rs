//! The declaration mechanism: one line per counter, from which its struct field, its merge,
//! its JSON key and its Prometheus series all follow, so a counter cannot be counted and
//! not shown.
//!
//! ```ignore
//! crate::counter::counters! {
//!     /// What the flow table did.
//!     pub struct FlowCounters {
//!         tcp: counter "flows_total" [proto = "tcp"] "Flows seen, by transport protocol.",
//!         evicted: counter "flows_evicted_total" "Flows pushed out of a full flow table.",
//!     }
//! }
//! ```
//!
//! Each line is `field: kind "metric" [label = "value", ...] "help"`:
//! - `field` is a `pub u64` of the struct and, unchanged, its key in the JSON report (the
//!   struct is `Serialize` in declaration order, so JSON key order is declaration order);
//! - `kind` is `counter` or `gauge` (its Prometheus TYPE), or `total_of` for a field that
//!   is the sum of a labelled family declared beside it (shown in JSON only: a scraper sums
//!   the family itself, and exporting both would count twice in `sum()`), or `elsewhere` for
//!   a field another group's family already exports (`metric` names that family; JSON only
//!   here, so `/metrics` has one series per count);
//! - `"metric"` is the family name without the `peercache_` prefix; fields sharing a family
//!   differ by their labels and must share kind and help;
//! - `"help"` is both the field's doc comment and the family's HELP text.
//!
//! The macro derives `Clone, Copy, Debug, Default, PartialEq, Eq, Serialize` and implements
//! [`Counters`]: `merge` adds field by field, `for_each` walks the fields with their
//! declarations (what `metrics::prometheus` renders).

/// How a declared field is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// The sum of the labelled family named in `metric` (JSON only).
    TotalOf,
    /// Exported as part of another group's family, named in `metric` (JSON only here).
    Elsewhere,
}

impl Kind {
    /// The Prometheus TYPE; None when the field is not exported on its own.
    pub fn prometheus_type(self) -> Option<&'static str> {
        match self {
            Kind::Counter => Some("counter"),
            Kind::Gauge => Some("gauge"),
            Kind::TotalOf | Kind::Elsewhere => None,
        }
    }
}

/// One declared counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The field's name, which is also its JSON key.
    pub key: &'static str,
    /// Metric family name without the `peercache_` prefix.
    pub metric: &'static str,
    pub kind: Kind,
    pub labels: &'static [(&'static str, &'static str)],
    pub help: &'static str,
}

/// A struct of declared counters (implemented by [`counters!`]).
pub trait Counters {
    /// The declarations, in field order.
    const DECLARED: &'static [Counter];
    /// Every field with its declaration, in field order.
    fn for_each(&self, f: &mut dyn FnMut(&'static Counter, u64));
    /// The same, to change them (tests fill every field through it).
    fn for_each_mut(&mut self, f: &mut dyn FnMut(&'static Counter, &mut u64));
    /// Add `o` field by field (counts of several workers, or of several runs).
    fn merge(&mut self, o: &Self);
}

/// Declares a struct of `u64` counters; see the module documentation for the syntax.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $kind:ident $metric:literal
                    $([ $($lk:ident = $lv:literal),* $(,)? ])? $help:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
        $vis struct $name {
            $(
                #[doc = $help]
                $(#[$fmeta])*
                pub $field: u64,
            )*
        }

        impl $crate::counter::Counters for $name {
            const DECLARED: &'static [$crate::counter::Counter] = &[
                $(
                    $crate::counter::Counter {
                        key: stringify!($field),
                        metric: $metric,
                        kind: $crate::counter::counters!(@kind $kind),
                        labels: &[$($((stringify!($lk), $lv)),*)?],
                        help: $help,
                    },
                )*
            ];

            fn for_each(&self, f: &mut dyn FnMut(&'static $crate::counter::Counter, u64)) {
                let values = [$(self.$field),*];
                for (c, v) in Self::DECLARED.iter().zip(values) {
                    f(c, v);
                }
            }

            fn for_each_mut(
                &mut self,
                f: &mut dyn FnMut(&'static $crate::counter::Counter, &mut u64),
            ) {
                let fields = [$(&mut self.$field),*];
                for (c, v) in Self::DECLARED.iter().zip(fields) {
                    f(c, v);
                }
            }

            fn merge(&mut self, o: &Self) {
                $(self.$field += o.$field;)*
            }
        }
    };
    (@kind counter) => { $crate::counter::Kind::Counter };
    (@kind gauge) => { $crate::counter::Kind::Gauge };
    (@kind total_of) => { $crate::counter::Kind::TotalOf };
    (@kind elsewhere) => { $crate::counter::Kind::Elsewhere };
}

pub(crate) use counters;

#[cfg(test)]
mod tests {
    use super::*;

    counters! {
        /// A group for the tests.
        struct Demo {
            a: counter "demo_a_total" "A.",
            b_tcp: counter "demo_b_total" [proto = "tcp"] "B, by protocol.",
            b_udp: counter "demo_b_total" [proto = "udp"] "B, by protocol.",
            b: total_of "demo_b_total" "All of B.",
            level: gauge "demo_level" "A level.",
        }
    }

    #[test]
    fn declarations_follow_the_fields() {
        let keys: Vec<&str> = Demo::DECLARED.iter().map(|c| c.key).collect();
        assert_eq!(keys, ["a", "b_tcp", "b_udp", "b", "level"]);
        assert_eq!(Demo::DECLARED[1].labels, &[("proto", "tcp")]);
        assert_eq!(Demo::DECLARED[0].labels, &[] as &[(&str, &str)]);
        assert_eq!(Demo::DECLARED[3].kind, Kind::TotalOf);
        assert_eq!(Demo::DECLARED[4].kind.prometheus_type(), Some("gauge"));
    }

    #[test]
    fn merge_adds_every_field_and_for_each_walks_them_in_order() {
        let mut x = Demo {
            a: 1,
            b_tcp: 2,
            b_udp: 3,
            b: 5,
            level: 7,
        };
        x.merge(&Demo {
            a: 10,
            b_tcp: 20,
            b_udp: 30,
            b: 50,
            level: 70,
        });
        let mut seen = Vec::new();
        x.for_each(&mut |c, v| seen.push((c.key, v)));
        assert_eq!(
            seen,
            [
                ("a", 11),
                ("b_tcp", 22),
                ("b_udp", 33),
                ("b", 55),
                ("level", 77)
            ]
        );
    }

    #[test]
    fn json_keys_are_the_fields_in_declaration_order() {
        let d = Demo {
            a: 1,
            b_tcp: 2,
            b_udp: 3,
            b: 5,
            level: 7,
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"a":1,"b_tcp":2,"b_udp":3,"b":5,"level":7}"#
        );
    }
}
