//! Loading scenario files: TOML text → checked [`Scenario`]s, with every problem located by file and line.
//!
//! Parsing rejects unknown keys, wrong types and unknown profile, backend or evidence names (serde with
//! `deny_unknown_fields`); validation then checks what types cannot: the attack exists and its parameters
//! match its declaration, every listed profile has an expectation and no other does, an `undetected`
//! hardened profile says why, the file is named after its id, and ids are unique across the set. All
//! problems of all files are collected, so one run of `scenario validate` shows everything to fix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::outcome::{Expectation, Outcome};
use super::schema::{
    Admission, AttackUse, EntryKind, EntrySpec, ImageSpec, LayerSpec, ParamValue, Reference, ReferenceKind, Scenario,
};
use attacks::ParamType;
use veritylab::profile::Profile;

use crate::backend::RunnerBackend;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_scenarios.rs"));
}

/// One problem in one scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (as given, or `scenarios/NAME` for the embedded set).
    pub file: String,
    /// 1-based line, 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column, 0 when the problem concerns the whole file.
    pub column: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// Every problem found while loading a set of scenarios.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<Problem>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in the scenarios:", if n == 1 { "" } else { "s" })?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// The scenarios shipped in the repository's `scenarios/` folder, embedded at build time.
pub fn embedded() -> Result<Vec<Scenario>, LoadErrors> {
    let sources: Vec<(String, String)> = embedded::SCENARIOS
        .iter()
        .map(|(name, text)| (format!("scenarios/{name}"), (*text).to_owned()))
        .collect();
    load_sources(&sources)
}

/// Loads every `*.toml` file of `dir` but a `Cargo.toml` (not recursive), sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, LoadErrors> {
    let whole = |message: String| {
        LoadErrors(vec![Problem {
            file: dir.display().to_string(),
            line: 0,
            column: 0,
            message,
        }])
    };
    let entries = std::fs::read_dir(dir).map_err(|e| whole(format!("cannot read the directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| whole(format!("cannot read the directory: {e}")))?
            .path();
        // The shipped folder also holds the `scenarios` crate's manifest, which is no scenario.
        if path.extension().is_some_and(|e| e == "toml") && !path.ends_with("Cargo.toml") && path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(whole("no scenario files (*.toml)".to_owned()));
    }
    paths.sort();
    let mut sources = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((path.display().to_string(), text)),
            Err(e) => problems.push(Problem {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    match load_sources(&sources) {
        Ok(scenarios) if problems.is_empty() => Ok(scenarios),
        Ok(_) => Err(LoadErrors(problems)),
        Err(LoadErrors(more)) => {
            problems.extend(more);
            Err(LoadErrors(problems))
        }
    }
}

/// Loads a set of `(file name, TOML text)` pairs and checks that ids are unique across the set.
pub fn load_sources(sources: &[(String, String)]) -> Result<Vec<Scenario>, LoadErrors> {
    let mut problems = Vec::new();
    let mut scenarios = Vec::new();
    let mut first_file: HashMap<String, String> = HashMap::new();
    for (file, text) in sources {
        match parse_located(file, text) {
            Ok((scenario, id_at)) => {
                if let Some(first) = first_file.get(&scenario.id) {
                    problems.push(Problem {
                        message: format!("id: duplicate id `{}` (also in {first})", scenario.id),
                        ..id_at
                    });
                } else {
                    first_file.insert(scenario.id.clone(), file.clone());
                    scenarios.push(scenario);
                }
            }
            Err(LoadErrors(more)) => problems.extend(more),
        }
    }
    if problems.is_empty() {
        Ok(scenarios)
    } else {
        Err(LoadErrors(problems))
    }
}

/// Parses and checks one scenario file; `file` names it in errors and must end in `<id>.toml`.
pub fn parse(file: &str, text: &str) -> Result<Scenario, LoadErrors> {
    parse_located(file, text).map(|(scenario, _)| scenario)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    id: Spanned<String>,
    title: Spanned<String>,
    description: Spanned<String>,
    #[serde(default)]
    references: Vec<Spanned<Reference>>,
    image: Spanned<RawImage>,
    attack: RawAttack,
    profiles: Spanned<Vec<Spanned<Profile>>>,
    #[serde(default)]
    backends: Option<Spanned<Vec<Spanned<RunnerBackend>>>>,
    #[serde(default)]
    needs_root: Option<Spanned<BTreeMap<Spanned<RunnerBackend>, Spanned<String>>>>,
    expect: Spanned<BTreeMap<Spanned<Profile>, Spanned<Expectation>>>,
    #[serde(default)]
    admission: Option<Spanned<RawAdmission>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmission {
    policy: Spanned<String>,
    namespace: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum ImageFrom {
    Sample,
    Pull,
    Build,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    from: Spanned<ImageFrom>,
    #[serde(default, rename = "ref")]
    reference: Option<Spanned<String>>,
    #[serde(default)]
    layers: Option<Spanned<Vec<RawLayer>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    files: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    path: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    symlink: Option<String>,
    #[serde(default)]
    dir: bool,
    #[serde(default)]
    whiteout: bool,
    #[serde(default)]
    mode: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttack {
    name: Spanned<String>,
    #[serde(default)]
    params: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// Byte offsets → 1-based line and column.
struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn at(&self, offset: usize, message: String) -> Problem {
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &self.text[..end];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Problem {
            file: self.file.to_owned(),
            line,
            column,
            message,
        }
    }

    fn span<T>(&self, spanned: &Spanned<T>, message: String) -> Problem {
        self.at(spanned.span().start, message)
    }
}

fn parse_located(file: &str, text: &str) -> Result<(Scenario, Problem), LoadErrors> {
    let loc = Locator { file, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().replace('\n', " ");
        LoadErrors(vec![match e.span() {
            Some(span) => loc.at(span.start, message),
            None => Problem {
                file: file.to_owned(),
                line: 0,
                column: 0,
                message,
            },
        }])
    })?;
    let mut problems = Vec::new();
    let id_at = loc.span(&raw.id, String::new());
    check_id(&loc, &raw.id, &mut problems);
    for (key, value) in [("title", &raw.title), ("description", &raw.description)] {
        if value.get_ref().trim().is_empty() {
            problems.push(loc.span(value, format!("{key}: must not be empty")));
        }
    }
    for reference in &raw.references {
        check_reference(&loc, reference, &mut problems);
    }
    let image = check_image(&loc, &raw.image, &mut problems);
    let attack = check_attack(&loc, &raw.attack, &mut problems);
    let profiles = check_profiles(&loc, &raw, &mut problems);
    let backends = check_backends(&loc, raw.backends.as_ref(), &mut problems);
    let needs_root = check_needs_root(&loc, raw.needs_root.as_ref(), &backends, &mut problems);
    let admission = check_admission(&loc, raw.admission.as_ref(), &raw.attack, &attack, &mut problems);
    if !problems.is_empty() {
        return Err(LoadErrors(problems));
    }
    let expect = raw
        .expect
        .into_inner()
        .into_iter()
        .map(|(k, v)| (k.into_inner(), v.into_inner()))
        .collect();
    let scenario = Scenario {
        id: raw.id.into_inner(),
        title: raw.title.into_inner(),
        description: raw.description.into_inner(),
        references: raw.references.into_iter().map(Spanned::into_inner).collect(),
        image,
        attack,
        profiles,
        backends,
        needs_root,
        expect,
        admission,
        source: file.to_owned(),
    };
    Ok((scenario, id_at))
}

/// `[admission]`: a known policy, and an attack that detonates at the registry or after admission (and an
/// attack detonating after admission only with one).
fn check_admission(
    loc: &Locator<'_>,
    raw: Option<&Spanned<RawAdmission>>,
    raw_attack: &RawAttack,
    attack: &AttackUse,
    problems: &mut Vec<Problem>,
) -> Option<Admission> {
    // A bad parameter is reported by the attack's own check; the stage is only known of an attack that builds.
    let stage = attacks::create(&attack.name, &attack.attack_params())
        .ok()
        .map(|a| a.stage());
    let Some(raw) = raw else {
        if stage == Some(attacks::Stage::AfterAdmission) {
            problems.push(loc.span(
                &raw_attack.name,
                format!(
                    "attack: `{}` detonates after admission, so the scenario needs an [admission] stage",
                    attack.name
                ),
            ));
        }
        return None;
    };
    let policy = raw.get_ref().policy.get_ref();
    if !crate::admission::names().any(|n| n == policy) {
        problems.push(loc.span(
            &raw.get_ref().policy,
            format!(
                "admission.policy: unknown policy `{policy}` (one of {})",
                crate::admission::names().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if stage.is_some_and(|s| !matches!(s, attacks::Stage::AfterAdmission | attacks::Stage::Registry)) {
        problems.push(loc.span(
            raw,
            format!(
                "admission: `{}` detonates at {}, not at the registry or after admission: the admission stage \
                 has nothing to check",
                attack.name,
                stage.map(|s| s.name()).unwrap_or_default()
            ),
        ));
    }
    let namespace = match &raw.get_ref().namespace {
        Some(namespace) => {
            let name = namespace.get_ref();
            if !veritylab::sign::is_namespace_name(name) {
                problems.push(loc.span(
                    namespace,
                    format!(
                        "admission.namespace: `{name}` is not a namespace name (lowercase letters, digits and `-`, \
                         at most 63)"
                    ),
                ));
            }
            name.clone()
        }
        None => "default".to_owned(),
    };
    Some(Admission {
        policy: policy.clone(),
        namespace,
    })
}

fn check_id(loc: &Locator<'_>, id: &Spanned<String>, problems: &mut Vec<Problem>) {
    let value = id.get_ref();
    let kebab = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
        && !value.contains("--");
    if !kebab {
        problems.push(loc.span(
            id,
            format!("id: `{value}` is not kebab-case (a-z, 0-9 and single dashes)"),
        ));
        return;
    }
    let stem = Path::new(loc.file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != value {
        problems.push(loc.span(
            id,
            format!("id: `{value}` does not match the file name (expected {value}.toml)"),
        ));
    }
}

fn check_reference(loc: &Locator<'_>, reference: &Spanned<Reference>, problems: &mut Vec<Problem>) {
    let r = reference.get_ref();
    if r.id.is_none() && r.url.is_none() {
        problems.push(loc.span(
            reference,
            "references: each reference needs an `id` or a `url`".to_owned(),
        ));
    }
    if r.kind == ReferenceKind::Cve {
        let valid =
            r.id.as_deref()
                .and_then(|id| id.strip_prefix("CVE-"))
                .is_some_and(|rest| {
                    let mut parts = rest.split('-');
                    let year = parts.next().unwrap_or_default();
                    let number = parts.next().unwrap_or_default();
                    parts.next().is_none()
                        && year.len() == 4
                        && number.len() >= 4
                        && year.bytes().chain(number.bytes()).all(|b| b.is_ascii_digit())
                });
        if !valid {
            problems.push(loc.span(
                reference,
                "references: a `cve` reference needs an id like CVE-2021-30465".to_owned(),
            ));
        }
    }
    if let Some(url) = &r.url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        problems.push(loc.span(reference, format!("references: url `{url}` is not an http(s) link")));
    }
}

fn check_image(loc: &Locator<'_>, image: &Spanned<RawImage>, problems: &mut Vec<Problem>) -> ImageSpec {
    let raw = image.get_ref();
    let unexpected = |key: &str, from: &str, problems: &mut Vec<Problem>| {
        problems.push(loc.span(image, format!("image: `{key}` is only allowed with from = \"{from}\"")));
    };
    match raw.from.get_ref() {
        ImageFrom::Sample => {
            if raw.reference.is_some() {
                unexpected("ref", "pull", problems);
            }
            if raw.layers.is_some() {
                unexpected("layers", "build", problems);
            }
            ImageSpec::Sample
        }
        ImageFrom::Pull => {
            if raw.layers.is_some() {
                unexpected("layers", "build", problems);
            }
            match &raw.reference {
                Some(r) if !r.get_ref().trim().is_empty() => ImageSpec::Pull {
                    reference: r.get_ref().clone(),
                },
                _ => {
                    problems.push(loc.span(image, "image: from = \"pull\" needs a non-empty `ref`".to_owned()));
                    ImageSpec::Sample
                }
            }
        }
        ImageFrom::Build => {
            if raw.reference.is_some() {
                unexpected("ref", "pull", problems);
            }
            match &raw.layers {
                Some(layers) if !layers.get_ref().is_empty() => ImageSpec::Build {
                    layers: layers.get_ref().iter().map(|l| check_layer(loc, l, problems)).collect(),
                },
                _ => {
                    problems.push(loc.span(
                        image,
                        "image: from = \"build\" needs at least one [[image.layers]]".to_owned(),
                    ));
                    ImageSpec::Sample
                }
            }
        }
    }
}

fn check_layer(loc: &Locator<'_>, layer: &RawLayer, problems: &mut Vec<Problem>) -> LayerSpec {
    let mut seen = BTreeSet::new();
    let mut files = Vec::with_capacity(layer.files.len());
    for entry in &layer.files {
        let e = entry.get_ref();
        if let Err(why) = check_relative_path(&e.path) {
            problems.push(loc.span(entry, format!("image.layers.files: path `{}` {why}", e.path)));
        }
        if !seen.insert(e.path.as_str()) {
            problems.push(loc.span(
                entry,
                format!("image.layers.files: path `{}` appears twice in this layer", e.path),
            ));
        }
        let kinds = [e.content.is_some(), e.symlink.is_some(), e.dir, e.whiteout];
        let kind = match (kinds.iter().filter(|&&k| k).count(), e) {
            (
                1,
                RawEntry {
                    content: Some(content), ..
                },
            ) => EntryKind::File {
                content: content.clone(),
            },
            (
                1,
                RawEntry {
                    symlink: Some(target), ..
                },
            ) => EntryKind::Symlink { target: target.clone() },
            (1, RawEntry { dir: true, .. }) => EntryKind::Dir,
            (1, _) => EntryKind::Whiteout,
            _ => {
                problems.push(loc.span(
                    entry,
                    format!(
                        "image.layers.files: `{}` needs exactly one of content = \"...\", symlink = \"...\", \
                         dir = true, whiteout = true",
                        e.path
                    ),
                ));
                EntryKind::Dir
            }
        };
        if e.mode.is_some_and(|m| m > 0o7777) {
            problems.push(loc.span(
                entry,
                format!("image.layers.files: mode of `{}` is above 0o7777", e.path),
            ));
        }
        files.push(EntrySpec {
            path: e.path.clone(),
            kind,
            mode: e.mode,
        });
    }
    LayerSpec { files }
}

fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        Err("is empty")
    } else if path.starts_with('/') {
        Err("must be relative to the image root (no leading /)")
    } else if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        Err("has an empty, `.` or `..` component")
    } else {
        Ok(())
    }
}

fn check_attack(loc: &Locator<'_>, raw: &RawAttack, problems: &mut Vec<Problem>) -> AttackUse {
    let name = raw.name.get_ref();
    let mut params = BTreeMap::new();
    let Some(spec) = attacks::find(name) else {
        let known: Vec<_> = attacks::CATALOGUE.iter().map(|a| a.name).collect();
        problems.push(loc.span(
            &raw.name,
            format!("attack.name: unknown attack `{name}` (known: {})", known.join(", ")),
        ));
        return AttackUse {
            name: name.clone(),
            params,
        };
    };
    for (key, value) in &raw.params {
        let Some(param) = spec.param(key.get_ref()) else {
            let known: Vec<_> = spec.params.iter().map(|p| p.name).collect();
            problems.push(loc.span(
                key,
                format!(
                    "attack.params: unknown parameter `{}` for attack `{name}` (known: {})",
                    key.get_ref(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
            continue;
        };
        match check_param(param.ty, value.get_ref()) {
            Ok(v) => {
                params.insert(key.get_ref().clone(), v);
            }
            Err(why) => problems.push(loc.span(
                value,
                format!("attack.params.{}: expected {}, {why}", param.name, param.ty),
            )),
        }
    }
    for param in spec.params.iter().filter(|p| p.required) {
        if !raw.params.keys().any(|k| k.get_ref() == param.name) {
            problems.push(loc.span(
                &raw.name,
                format!(
                    "attack.params: attack `{name}` needs parameter `{}` ({})",
                    param.name, param.doc
                ),
            ));
        }
    }
    AttackUse {
        name: name.clone(),
        params,
    }
}

fn check_param(ty: ParamType, value: &toml::Value) -> Result<ParamValue, String> {
    let found = || format!("found {} `{value}`", value.type_str());
    match (ty, value) {
        (ParamType::Integer, toml::Value::Integer(i)) => u64::try_from(*i)
            .map(ParamValue::Integer)
            .map_err(|_| format!("found {i}")),
        (ParamType::Bool, toml::Value::Boolean(b)) => Ok(ParamValue::Bool(*b)),
        (ParamType::String, toml::Value::String(s)) => Ok(ParamValue::String(s.clone())),
        (ParamType::Path, toml::Value::String(s)) => {
            check_relative_path(s).map_err(|why| format!("`{s}` {why}"))?;
            Ok(ParamValue::String(s.clone()))
        }
        (ParamType::Hex, toml::Value::String(s)) => {
            if s.is_empty() || s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                Err(format!("found `{s}`"))
            } else {
                Ok(ParamValue::String(s.clone()))
            }
        }
        (ParamType::Choice(choices), toml::Value::String(s)) => {
            if choices.contains(&s.as_str()) {
                Ok(ParamValue::String(s.clone()))
            } else {
                Err(format!("found `{s}`"))
            }
        }
        _ => Err(found()),
    }
}

fn check_profiles(loc: &Locator<'_>, raw: &RawScenario, problems: &mut Vec<Problem>) -> Vec<Profile> {
    let listed = raw.profiles.get_ref();
    if listed.is_empty() {
        problems.push(loc.span(&raw.profiles, "profiles: must name at least one profile".to_owned()));
    }
    let mut seen = BTreeSet::new();
    for profile in listed {
        if !seen.insert(*profile.get_ref()) {
            problems.push(loc.span(profile, format!("profiles: `{}` is listed twice", profile.get_ref())));
        } else if !raw.expect.get_ref().keys().any(|k| k.get_ref() == profile.get_ref()) {
            problems.push(loc.span(
                profile,
                format!(
                    "profiles: `{0}` is run but has no [expect.{0}] table",
                    profile.get_ref()
                ),
            ));
        }
    }
    for (profile, expectation) in raw.expect.get_ref() {
        let p = *profile.get_ref();
        if !seen.contains(&p) {
            problems.push(loc.span(profile, format!("expect.{p}: `{p}` is not in `profiles`")));
        }
        check_expectation(loc, p, expectation, problems);
    }
    listed.iter().map(|p| *p.get_ref()).collect()
}

fn check_expectation(loc: &Locator<'_>, profile: Profile, e: &Spanned<Expectation>, problems: &mut Vec<Problem>) {
    let x = e.get_ref();
    let why_given = x.why.as_deref().is_some_and(|w| !w.trim().is_empty());
    match x.outcome {
        Outcome::Undetected => {
            if profile.hardened() && !why_given {
                problems.push(loc.span(
                    e,
                    "expect.hardened: an `undetected` hardened profile needs `why` (the honest explanation)".to_owned(),
                ));
            }
            if x.error.is_some() || !x.findings.is_empty() {
                problems.push(loc.span(
                    e,
                    format!("expect.{profile}: `undetected` cannot expect an error or findings"),
                ));
            }
        }
        Outcome::Detected => {
            if x.error.is_none() && x.findings.is_empty() && x.device.is_none() {
                problems.push(loc.span(
                    e,
                    format!("expect.{profile}: `detected` needs its evidence: `error`, `findings` or `device`"),
                ));
            }
        }
        Outcome::Blocked => {}
        Outcome::Inconclusive => problems.push(loc.span(
            e,
            format!("expect.{profile}: `inconclusive` is never an expectation: it always fails the run"),
        )),
    }
}

fn check_backends(
    loc: &Locator<'_>,
    backends: Option<&Spanned<Vec<Spanned<RunnerBackend>>>>,
    problems: &mut Vec<Problem>,
) -> Vec<RunnerBackend> {
    let Some(backends) = backends else {
        return RunnerBackend::ALL.to_vec();
    };
    if backends.get_ref().is_empty() {
        problems.push(loc.span(
            backends,
            "backends: leave it out to run on all backends, or name at least one".to_owned(),
        ));
    }
    let mut seen = BTreeSet::new();
    for backend in backends.get_ref() {
        if !seen.insert(*backend.get_ref()) {
            problems.push(loc.span(backend, format!("backends: `{}` is listed twice", backend.get_ref())));
        }
    }
    backends.get_ref().iter().map(|b| *b.get_ref()).collect()
}

fn check_needs_root(
    loc: &Locator<'_>,
    needs_root: Option<&Spanned<BTreeMap<Spanned<RunnerBackend>, Spanned<String>>>>,
    backends: &[RunnerBackend],
    problems: &mut Vec<Problem>,
) -> BTreeMap<RunnerBackend, String> {
    let Some(needs_root) = needs_root else {
        return BTreeMap::new();
    };
    for (backend, why) in needs_root.get_ref() {
        let name = backend.get_ref();
        if matches!(
            name,
            RunnerBackend::Kernel | RunnerBackend::KernelVm | RunnerBackend::Runc
        ) {
            problems.push(loc.span(
                backend,
                format!("needs_root: every `{name}` cell needs root already; list only fuse or emulated"),
            ));
        } else if !backends.contains(name) {
            problems.push(loc.span(
                backend,
                format!("needs_root: `{name}` is not one of the scenario's backends"),
            ));
        }
        if why.get_ref().trim().is_empty() {
            problems.push(loc.span(why, format!("needs_root.{name}: say why the attack needs root there")));
        }
    }
    needs_root
        .get_ref()
        .iter()
        .map(|(backend, why)| (*backend.get_ref(), why.get_ref().clone()))
        .collect()
}
