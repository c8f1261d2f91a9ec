-- A project's executor: its host jobs run in this image (executor: docker) when set,
-- on the host (in the job sandbox) when NULL. Existing projects keep the host.
ALTER TABLE projects ADD COLUMN executor_image TEXT;
