/**
 * The project's schema library: zod's functional "mini" build, which the CLI bundle trims to
 * the checks actually used (~35 KiB instead of ~700), so that a command starts fast and
 * small. English messages are registered once here. Import it as a namespace
 * (`import * as z from "../util/zod.js"`), never from "zod" directly: a namespace import
 * keeps the bundler able to drop what is not used.
 */

import { config } from "zod/mini";
import en from "zod/v4/locales/en.js";

config(en());

export * from "zod/mini";
