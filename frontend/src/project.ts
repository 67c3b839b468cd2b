// Project page entry: wires the scenes (list, upload, deletion), classes, members, settings, label import, dataset
// export, detectors (training, versions) and proposer accuracy (src/project/).
import "./style.css";
import "./project/manage.css";
import "./project/detectors.css";
import { getJson } from "./api";
import { byId } from "./dom";
import { AccuracyPanel } from "./project/accuracy";
import { ClassAdmin } from "./project/classes";
import { DetectorPanel } from "./project/detectors";
import { ExportPanel } from "./project/exports";
import { ImportDialog } from "./project/imports";
import { MemberAdmin } from "./project/members";
import { sceneDeleter } from "./project/scene-delete";
import { setupProjectSettings } from "./project/settings";
import { SceneList } from "./project/scenes";

const root = byId("project-page")!;
const projectId = Number(root.dataset.projectId);
const dialog = byId<HTMLDialogElement>("scene-delete-dialog");

let scenes: SceneList | null = null;
const onDelete = dialog && root.dataset.canDeleteScenes === "1" ? sceneDeleter(dialog, () => void scenes?.load()) : null;
scenes = new SceneList(projectId, byId("scenes")!, byId("uploads")!, onDelete);
scenes.setupDropzone(byId("dropzone"), byId<HTMLInputElement>("file-input"));
void scenes.follow();

const classes = new ClassAdmin(projectId, byId("class-admin")!, byId("classes-error")!, root.dataset.canEditClasses === "1");
classes.setupAddForm(byId<HTMLFormElement>("class-add") as HTMLFormElement | null);
void classes.load();

const members = new MemberAdmin(
  projectId, byId("member-admin")!, byId("members-error")!, root.dataset.canManageMembers === "1", Number(root.dataset.userId),
);
members.setupAddForm(byId<HTMLFormElement>("member-add") as HTMLFormElement | null);
void members.load();

setupProjectSettings(projectId, byId<HTMLFormElement>("project-edit") as HTMLFormElement | null, byId("project-edit-error"));

// Import, export and training are for managers and annotators; importing as accepted objects, adding classes and
// choosing the current detector, managers only. Every member sees the detectors and measures proposers.
void getJson<{ role: string }>(`/api/projects/${projectId}/me/`).then(({ role }) => {
  const accuracy = new AccuracyPanel(projectId, byId("accuracy-section")!, role === "manager");
  void accuracy.load();
  const detectors = new DetectorPanel(projectId, byId("detectors-section")!, {
    canTrain: role === "manager" || role === "annotator", canManage: role === "manager",
  }, (versions) => accuracy.setVersions(versions));
  void detectors.load();
  if (role !== "manager" && role !== "annotator") return;
  const grid = byId("datasets-grid")!;
  const imports = byId("imports-section")!;
  const exports = byId("exports-section")!;
  grid.hidden = imports.hidden = exports.hidden = false;
  const manager = role === "manager";
  new ImportDialog(projectId, imports, { accepted: manager, newClasses: manager }, () => void classes.load());
  void new ExportPanel(projectId, exports).load();
});
