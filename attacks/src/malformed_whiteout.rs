//! `malformed-whiteout`: the publisher's build (buggy, or run by an attacker who holds the signing key's
//! pipeline) ships a layer with an OCI whiteout whose hidden name is empty, `.` or `..` (tar entries `.wh.`,
//! `.wh..`, `.wh...`), and signs the image. Converted naively, each becomes a directory entry called ``, `.`
//! or `..`: an EROFS image that `fsck.erofs` rejects and the kernel cannot list, under a valid signature.

use crate::catalogue::{AttackSpec, ParamType, opt, req};
use crate::{Attack, AttackError, Effect, Env, Params, SigningKey, Stage, layer_tar, steps};

/// The attack.
#[derive(Debug, Clone)]
pub(crate) struct MalformedWhiteout {
    dir: String,
    hidden: String,
}

impl MalformedWhiteout {
    /// From the scenario's parameters (`dir`, the directory holding the whiteout, and `hidden`, the name it
    /// hides: empty, `.` or `..`).
    pub(crate) fn new(params: &Params) -> Result<Self, AttackError> {
        let hidden = params.string("hidden").unwrap_or(".").to_owned();
        if !matches!(hidden.as_str(), "" | "." | "..") {
            return Err(AttackError::Param {
                name: "hidden".to_owned(),
                reason: format!("{hidden:?} is a valid name; this attack hides an empty name, `.` or `..`"),
            });
        }
        Ok(Self {
            dir: params.required("dir")?,
            hidden,
        })
    }
}

impl Attack for MalformedWhiteout {
    fn name(&self) -> &'static str {
        SPEC.name
    }

    fn stage(&self) -> Stage {
        Stage::NodeDisk
    }

    fn detonate(&mut self, env: &mut dyn Env) -> Result<String, AttackError> {
        let mut tars = steps::layer_tars(env)?;
        let mut top = layer_tar::Builder::new(Vec::new());
        layer_tar::append_whiteout(&mut top, &format!("{}/{}", self.dir, self.hidden))
            .map_err(|e| AttackError::env(format!("the whiteout layer: {e}")))?;
        tars.push(layer_tar::finish(top).map_err(|e| AttackError::env(format!("the whiteout layer: {e}")))?);
        let published = steps::publish(env, "whiteout", &tars)?;
        steps::retag(env, published.clone())?;
        // The publisher signs with the trusted key, as its pipeline would; the signer converts each layer to
        // find its root hash, so it may refuse the layer, and then the image ships unsigned.
        let image = env.image().to_owned();
        let built = env.build_times().built;
        let signed = match env.sign(&image, SigningKey::Trusted, built) {
            Ok(digest) => format!("signed with the trusted key as {digest}"),
            Err(refused) => format!("unsigned: the publisher's `veritylab sign` refused it ({refused})"),
        };
        Ok(format!(
            "{image} now names {}, whose top layer holds the whiteout {}/.wh.{}; {signed}",
            published.digest, self.dir, self.hidden
        ))
    }

    fn observe(&mut self, env: &mut dyn Env) -> Result<Effect, AttackError> {
        let entries = env.list_in_container(&self.dir)?;
        let odd: Vec<&String> = entries
            .iter()
            .filter(|n| matches!(n.as_str(), "" | "." | ".."))
            .collect();
        Ok(if odd.is_empty() {
            Effect::Genuine(format!("the container lists /{}: {entries:?}", self.dir))
        } else {
            Effect::Seen(format!(
                "the container lists /{} with entries named {odd:?} beside its own links",
                self.dir
            ))
        })
    }
}

/// The catalogue entry: name, summary, parameters and constructor.
pub(crate) const SPEC: AttackSpec = AttackSpec {
    name: "malformed-whiteout",
    summary: "ship, signed, a layer whose whiteout hides an empty name, `.` or `..` (`.wh.`, `.wh..`, `.wh...`)",
    params: &[
        req("dir", ParamType::Path, "the directory holding the whiteout"),
        opt(
            "hidden",
            ParamType::String,
            "the name the whiteout hides: \"\", \".\" or \"..\" (default: \".\")",
        ),
    ],
    create: |params| Ok(Box::new(MalformedWhiteout::new(params)?)),
};
