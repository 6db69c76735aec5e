//! The Lua scripts, one per atomic state change, loaded from `lua/*.lua` at compile time
//! and run with EVALSHA; a NOSCRIPT reply (restart, failover, `SCRIPT FLUSH`) loads the
//! script and runs it again.

use std::sync::LazyLock;

use fred::clients::Pool;
use fred::interfaces::LuaInterface;
use fred::types::scripts::Script;
use fred::types::{MultipleKeys, MultipleValues, Value};

/// One script and its SHA-1.
pub(crate) struct LuaScript {
    pub(crate) name: &'static str,
    script: Script,
}

impl LuaScript {
    fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            script: Script::from_lua(source),
        }
    }

    /// Runs the script in one round trip (two more only after a NOSCRIPT).
    pub(crate) async fn run(
        &self,
        pool: &Pool,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, fred::error::Error> {
        let client = pool.next();
        let sha = self.script.sha1().clone();
        // Converted once: a retry after NOSCRIPT clones reference-counted buffers only.
        let keys = MultipleKeys::from(keys);
        let args: MultipleValues = Value::Array(args);
        match client
            .evalsha::<Value, _, _, _>(sha.clone(), keys.clone(), args.clone())
            .await
        {
            Err(error) if error.details().starts_with("NOSCRIPT") => {
                if let Some(lua) = self.script.lua() {
                    client.script_load_cluster::<Value, _>(lua.clone()).await?;
                }
                client.evalsha(sha, keys, args).await
            }
            result => result,
        }
    }
}

macro_rules! lua {
    ($static:ident, $name:literal $(, $helper:literal)*) => {
        pub(crate) static $static: LazyLock<LuaScript> = LazyLock::new(|| {
            LuaScript::new(
                $name,
                concat!(
                    include_str!("../lua/common.lua"),
                    $(include_str!(concat!("../lua/", $helper, ".lua")),)*
                    include_str!(concat!("../lua/", $name, ".lua"))
                ),
            )
        });
    };
}

lua!(IDEM_BEGIN, "idem_begin");
lua!(IDEM_COMPLETE, "idem_complete");
lua!(IDEM_RELEASE, "idem_release");
lua!(IDEM_RENEW, "idem_renew");
lua!(IDEM_DELETE, "idem_delete");
lua!(IDEM_PURGE, "idem_purge");
lua!(LOCK_ACQUIRE, "lock_acquire", "checks");
lua!(LOCK_RENEW, "lock_renew", "checks");
lua!(LOCK_RELEASE, "lock_release", "checks");
lua!(COUNT_LIVE, "count_live");
lua!(SAGA_CREATE, "saga_create", "checks", "saga_common");
lua!(SAGA_ACQUIRE, "saga_acquire", "checks", "saga_common");
lua!(SAGA_SAVE, "saga_save", "checks", "saga_common");
lua!(SAGA_LIST, "saga_list");
lua!(SAGA_RECOVERABLE, "saga_recoverable");
lua!(SAGA_DELETE, "saga_delete", "checks", "saga_common");
lua!(
    TASK_SUBMIT_MANY,
    "task_submit_many",
    "checks",
    "task_common"
);
lua!(SAGA_PURGE_DUE, "saga_purge_due", "checks");
lua!(TASK_CLAIM, "task_claim", "checks", "task_common");
lua!(TASK_CLAIM_NEXT, "task_claim_next", "checks", "task_common");
lua!(TASK_FINISH, "task_finish", "checks", "task_common");
lua!(
    TASK_COMPLETE_MANY,
    "task_complete_many",
    "checks",
    "task_common"
);
lua!(TASK_RETRY, "task_retry", "checks", "task_common");
lua!(TASK_GET, "task_get", "checks", "task_common");
lua!(TASK_LIST, "task_list", "checks", "task_common");
lua!(TASK_DELETE, "task_delete", "checks", "task_common");
lua!(TASK_SWEEP, "task_sweep", "checks", "task_common");

#[cfg(test)]
mod tests {
    /// Every key name is built in `keys.rs` and passed in KEYS (or read from data Rust
    /// wrote); no script concatenates one. A `..` outside comments may only build an error
    /// message or a score bound.
    #[test]
    fn no_script_builds_a_key_name() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("lua dir") {
            let path = entry.expect("entry").path();
            let source = std::fs::read_to_string(&path).expect("read");
            for (n, line) in source.lines().enumerate() {
                let code = line.split("--").next().unwrap_or("");
                if code.contains("..") {
                    assert!(
                        code.contains("corrupt(")
                            || code.contains("error_reply(")
                            || code.contains("'(' .. "),
                        "{}:{}: builds a string that may be a key name: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 20, "found {checked} scripts");
    }
}
