//! The model compiled into the tables the evaluator reads on every event: interned event types,
//! and per journey a local numbering of the types it cares about, so that milestones, outcomes,
//! invariants and policies are bit masks and small indexes.

use std::collections::HashMap;

use causeway_model::{InvariantRule, Key, Model};

use crate::compact::{U64Map, hash_str};

/// "No local index": the type is not relevant to this journey.
pub(crate) const NONE: u8 = u8::MAX;

/// At most this many event types are relevant to one journey (bit masks are `u64`).
pub(crate) const MAX_LOCAL_TYPES: usize = 64;

/// At most this many policies are judged in one journey (obligations name theirs in a byte).
pub(crate) const MAX_POLICIES: usize = 255;

pub(crate) struct Compiled {
    /// Global type id by event type name.
    pub type_ids: HashMap<String, u16>,
    pub type_names: Vec<String>,
    /// Global type id by the hash of its name (verified against `type_names`).
    pub type_index: U64Map<u16>,
    /// The owning context of each type (as declared by `events:`), if any.
    pub type_context: Vec<Option<String>>,
    /// The owner of that context, if any.
    pub type_owner: Vec<Option<String>>,
    /// Hash of the owning context's name: the scope of per-aggregate sequences.
    pub type_scope: Vec<u64>,
    /// The aggregate each type is about, if declared.
    pub type_aggregate: Vec<Option<String>>,
    /// The owner of each service's context.
    pub service_owner: HashMap<String, String>,
    pub journeys: Vec<JourneyDef>,
    pub policies: Vec<PolicyDef>,
    /// The distinct durations deadlines are made with; a deadline's class is its index here.
    pub durations: Vec<i64>,
}

pub(crate) struct PolicyDef {
    pub name: String,
    pub then: Vec<u16>,
    pub within_ms: u64,
}

pub(crate) enum KeyDef {
    /// A JSON pointer, split into its unescaped reference tokens.
    Pointer(Vec<String>),
    /// The subject; when the journey's first milestone declares an aggregate, only for events of
    /// that aggregate (or of none): another aggregate's subject is not this journey's key.
    Subject { aggregate: Option<String> },
}

pub(crate) struct JourneyDef {
    pub name: String,
    pub key: KeyDef,
    /// Local index → global type id. Milestones come first, in model order.
    pub local: Vec<u16>,
    /// Global type id → local index, or [`NONE`].
    pub local_of: Vec<u8>,
    pub milestones: u8,
    /// Types that may create an instance: milestones and outcome events.
    pub create_mask: u64,
    /// Outcome index of each local type, or [`NONE`].
    pub outcome_of: Vec<u8>,
    pub outcomes: Vec<String>,
    pub invariants: Vec<InvariantDef>,
    /// Types that are the `event` of an invariant, or referenced by one.
    pub invariant_mask: u64,
    pub policies: Vec<PolicyLocal>,
    pub when_mask: u64,
    pub then_mask: u64,
    pub complete_within_us: Option<i64>,
    pub complete_within_ms: Option<u64>,
    pub stall_after_us: Option<i64>,
    pub stall_after_ms: Option<u64>,
    /// Deadline queues of `stall_after` and `complete_within`.
    pub stall_class: usize,
    pub complete_class: usize,
    pub reconciliation_owner: Option<String>,
}

pub(crate) struct InvariantDef {
    pub name: String,
    pub event: u8,
    pub rule: Rule,
}

pub(crate) enum Rule {
    Requires(u64),
    AtMost(u32),
    ForbiddenAfter(u64),
}

/// A policy as seen from one journey.
pub(crate) struct PolicyLocal {
    pub policy: u16,
    pub when: u8,
    pub then_mask: u64,
    pub within_us: i64,
    /// The deadline queue of its duration.
    pub class: usize,
}

impl Compiled {
    pub fn new(model: &Model) -> Compiled {
        let mut c = Compiled {
            type_ids: HashMap::new(),
            type_names: Vec::new(),
            type_index: U64Map::default(),
            type_context: Vec::new(),
            type_owner: Vec::new(),
            type_scope: Vec::new(),
            type_aggregate: Vec::new(),
            service_owner: HashMap::new(),
            journeys: Vec::new(),
            policies: Vec::new(),
            durations: Vec::new(),
        };
        for ctx in model.contexts.values() {
            if let Some(owner) = &ctx.owner {
                for service in &ctx.services {
                    c.service_owner.entry(service.clone()).or_insert_with(|| owner.clone());
                }
            }
        }
        for (name, def) in &model.events {
            let id = c.intern(name);
            c.type_context[id as usize] = Some(def.context.clone());
            c.type_scope[id as usize] = hash_str(7, &def.context);
            c.type_owner[id as usize] = model.owner_of_context(&def.context).map(str::to_owned);
            c.type_aggregate[id as usize] = def.aggregate.clone();
        }
        for (name, p) in &model.policies {
            let _ = c.intern(&p.when);
            let then = p.then.iter().map(|t| c.intern(t)).collect();
            c.policies.push(PolicyDef { name: name.clone(), then, within_ms: p.within_ms });
        }
        for (name, j) in &model.journeys {
            let mut local: Vec<u16> = Vec::new();
            for m in &j.milestones {
                add(&mut c, &mut local, m);
            }
            let milestones = local.len() as u8;
            let mut outcome_pairs = Vec::new();
            for (oi, (_, events)) in j.outcomes.iter().enumerate() {
                for e in events {
                    let l = add(&mut c, &mut local, e);
                    if l != NONE {
                        outcome_pairs.push((l, oi as u8));
                    }
                }
            }
            let mut invariants = Vec::new();
            for inv in &j.invariants {
                let event = add(&mut c, &mut local, &inv.event);
                let mask_of = |c: &mut Compiled, local: &mut Vec<u16>, names: &[String]| -> u64 {
                    names.iter().map(|n| add(c, local, n)).filter(|l| *l != NONE).fold(0u64, |m, l| m | (1u64 << l))
                };
                let rule = match &inv.rule {
                    InvariantRule::Requires(names) => Rule::Requires(mask_of(&mut c, &mut local, names)),
                    InvariantRule::AtMost(n) => Rule::AtMost(*n),
                    InvariantRule::ForbiddenAfter(names) => Rule::ForbiddenAfter(mask_of(&mut c, &mut local, names)),
                };
                if event != NONE {
                    invariants.push(InvariantDef { name: inv.name.clone(), event, rule });
                }
            }
            let named_len = local.len();
            // Policies touching a type this journey names are judged in its instances.
            let mut policies = Vec::new();
            for (pi, (_, p)) in model.policies.iter().enumerate() {
                let named = |c: &Compiled, local: &[u16], t: &str| c.type_ids.get(t).is_some_and(|g| local[..named_len].contains(g));
                let touches = named(&c, &local, &p.when) || p.then.iter().any(|t| named(&c, &local, t));
                if !touches {
                    continue;
                }
                if policies.len() == MAX_POLICIES {
                    break;
                }
                let when = add(&mut c, &mut local, &p.when);
                let then_mask = p.then.iter().map(|t| add(&mut c, &mut local, t)).filter(|l| *l != NONE).fold(0u64, |m, l| m | (1u64 << l));
                if when != NONE && then_mask != 0 {
                    let within_us = ms_to_us(p.within_ms);
                    let class = c.class_of(within_us);
                    policies.push(PolicyLocal { policy: pi as u16, when, then_mask, within_us, class });
                }
            }
            let mut outcome_of = vec![NONE; local.len()];
            let mut create_mask = if milestones == 64 { u64::MAX } else { (1u64 << milestones) - 1 };
            for (l, oi) in outcome_pairs {
                if outcome_of[l as usize] == NONE {
                    outcome_of[l as usize] = oi;
                }
                create_mask |= 1 << l;
            }
            let invariant_mask = invariants.iter().fold(0u64, |m, inv| {
                m | (1 << inv.event)
                    | match inv.rule {
                        Rule::Requires(x) | Rule::ForbiddenAfter(x) => x,
                        Rule::AtMost(_) => 0,
                    }
            });
            let stall_class = c.class_of(j.stall_after_ms.map_or(0, ms_to_us));
            let complete_class = c.class_of(j.complete_within_ms.map_or(0, ms_to_us));
            let when_mask = policies.iter().fold(0, |m, p| m | (1u64 << p.when));
            let then_mask = policies.iter().fold(0, |m, p| m | p.then_mask);
            c.journeys.push(JourneyDef {
                name: name.clone(),
                key: match &j.key {
                    Key::Pointer(p) => KeyDef::Pointer(pointer_tokens(p)),
                    Key::Subject => {
                        KeyDef::Subject { aggregate: j.milestones.first().and_then(|m| model.events.get(m)).and_then(|e| e.aggregate.clone()) }
                    }
                },
                local,
                local_of: Vec::new(),
                milestones,
                create_mask,
                outcome_of,
                outcomes: j.outcomes.keys().cloned().collect(),
                invariants,
                invariant_mask,
                policies,
                when_mask,
                then_mask,
                complete_within_us: j.complete_within_ms.map(ms_to_us),
                complete_within_ms: j.complete_within_ms,
                stall_after_us: j.stall_after_ms.map(ms_to_us),
                stall_after_ms: j.stall_after_ms,
                stall_class,
                complete_class,
                reconciliation_owner: j.reconciliation_owner.clone(),
            });
        }
        let n = c.type_names.len();
        for j in &mut c.journeys {
            j.local_of = vec![NONE; n];
            for (l, g) in j.local.iter().enumerate() {
                j.local_of[*g as usize] = l as u8;
            }
        }
        c
    }

    /// The deadline class of a duration.
    fn class_of(&mut self, us: i64) -> usize {
        match self.durations.iter().position(|d| *d == us) {
            Some(k) => k,
            None => {
                self.durations.push(us);
                self.durations.len() - 1
            }
        }
    }

    fn intern(&mut self, name: &str) -> u16 {
        if let Some(id) = self.type_ids.get(name) {
            return *id;
        }
        let id = u16::try_from(self.type_names.len()).expect("fewer than 65536 event types");
        self.type_ids.insert(name.to_string(), id);
        // Two names with one hash: the first stays in the fast index, the second is found the
        // slow way.
        self.type_index.entry(hash_str(9, name)).or_insert(id);
        self.type_names.push(name.to_string());
        self.type_context.push(None);
        self.type_owner.push(None);
        self.type_scope.push(0);
        self.type_aggregate.push(None);
        id
    }

    /// The global id of an event type, if the model names it.
    pub fn type_id(&self, name: &str) -> Option<u16> {
        match self.type_index.get(&hash_str(9, name)) {
            Some(&id) if crate::compact::eq_bytes(self.type_names[id as usize].as_bytes(), name.as_bytes()) => Some(id),
            Some(_) => self.type_ids.get(name).copied(),
            None => None,
        }
    }

    pub fn type_name(&self, g: u16) -> &str {
        &self.type_names[g as usize]
    }
}

impl JourneyDef {
    pub fn local_name<'a>(&self, c: &'a Compiled, l: u8) -> &'a str {
        c.type_name(self.local[l as usize])
    }

    /// Names of the local types in `mask`, in local order.
    pub fn names<'a>(&self, c: &'a Compiled, mask: u64) -> Vec<&'a str> {
        (0..self.local.len() as u8).filter(|l| mask & (1 << l) != 0).map(|l| self.local_name(c, l)).collect()
    }

    pub fn is_milestone(&self, l: u8) -> bool {
        l < self.milestones
    }
}

/// RFC 6901 reference tokens: `/a~1b/0` → `["a/b", "0"]`.
fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.strip_prefix('/').unwrap_or(pointer).split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// The value at a pointer's tokens, without allocating.
pub(crate) fn resolve<'v>(mut v: &'v serde_json::Value, tokens: &[String]) -> Option<&'v serde_json::Value> {
    use serde_json::Value;
    for t in tokens {
        v = match v {
            // Payloads are small objects: a scan comparing lengths first beats the map's ordered
            // descent, which compares (and calls memcmp) at every step.
            Value::Object(m) if m.len() <= 16 => m.iter().find(|(k, _)| crate::compact::eq_bytes(k.as_bytes(), t.as_bytes()))?.1,
            Value::Object(m) => m.get(t.as_str())?,
            Value::Array(a) => {
                if t.is_empty() || (t.len() > 1 && t.starts_with('0')) || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                a.get(t.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// The local index of `t`, added if new; [`NONE`] once the journey has 64 types.
fn add(c: &mut Compiled, local: &mut Vec<u16>, t: &str) -> u8 {
    let g = c.intern(t);
    if let Some(i) = local.iter().position(|x| *x == g) {
        return i as u8;
    }
    if local.len() >= MAX_LOCAL_TYPES {
        return NONE;
    }
    local.push(g);
    (local.len() - 1) as u8
}

fn ms_to_us(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000)
}
