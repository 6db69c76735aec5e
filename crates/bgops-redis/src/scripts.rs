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
lua!(LOCK_ACQUIRE, "lock_acquire");
lua!(LOCK_RENEW, "lock_renew");
lua!(LOCK_RELEASE, "lock_release");
lua!(COUNT_LIVE, "count_live");
lua!(SAGA_CREATE, "saga_create", "saga_common");
lua!(SAGA_ACQUIRE, "saga_acquire", "saga_common");
lua!(SAGA_SAVE, "saga_save", "saga_common");
lua!(SAGA_LIST, "saga_list");
lua!(SAGA_RECOVERABLE, "saga_recoverable");
lua!(SAGA_DELETE, "saga_delete", "saga_common");
lua!(TASK_SUBMIT, "task_submit", "task_common");
lua!(TASK_CLAIM, "task_claim", "task_common");
lua!(TASK_CLAIM_NEXT, "task_claim_next", "task_common");
lua!(TASK_FINISH, "task_finish", "task_common");
lua!(TASK_RETRY, "task_retry", "task_common");
lua!(TASK_GET, "task_get", "task_common");
lua!(TASK_LIST, "task_list", "task_common");
lua!(TASK_DELETE, "task_delete", "task_common");
lua!(TASK_SWEEP, "task_sweep", "task_common");
