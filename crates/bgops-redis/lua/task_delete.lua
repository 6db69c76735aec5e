-- Deletes a task, its history, key mapping and index entries. KEYS: globals, task.
-- Returns 1 | 0
local t, err = task_load(KEYS[9])
if err then return err end
if not t then return 0 end
return task_remove(t)
