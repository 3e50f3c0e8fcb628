import { getOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Exposure, policy } from "../../gen/tally/common/v1/policy_pb";

/** A method is reachable from outside only when its policy option says EXPOSURE_PUBLIC; anything unmarked stays inside. */
export const isPublic = (method: DescMethod): boolean => getOption(method, policy)?.exposure === Exposure.PUBLIC;

export const publicMethods = (service: DescService): DescMethod[] => service.methods.filter(isPublic);
