; Inno Setup 6 script of the appliance's Windows installer: a per-user install, no administrator rights needed,
; or (chosen in the first dialog, or /ALLUSERS) an install for all users that can also run it as a Windows service.
;
;   python installer\build.py --setup          (builds dist\appliance\ with PyInstaller, then runs ISCC on this file)
;   iscc /DAppVersion=0.1.0 /DBundleDir=C:\src\appliance\dist\appliance /DOutputDir=C:\src\appliance\dist installer\windows\appliance.iss
;
; Installs the PyInstaller bundle into %LOCALAPPDATA%\Programs\appliance, adds a Start menu shortcut, offers
; "Start appliance when I log in" (the HKCU Run value "appliance": the same value the tray's "Start at login"
; toggle writes and reads), and registers an uninstaller that stops the app and removes that value, whoever
; wrote it. The user's settings, models and logs (%LOCALAPPDATA%\appliance) are left alone.
;
; "Run as a service" (task "service", offered only when installing for all users): `appliance-cli.exe service
; install` registers the Windows service "appliance" (appliance.system_service: virtual account NT SERVICE\appliance,
; automatic start, restart on failure, %ProgramData%\appliance locked down) and starts it. A service runs its program
; as another account from boot, so the program must be where only administrators can write it: Program Files, hence
; the all-users install (PrivilegesRequiredOverridesAllowed), never the per-user folder. Upgrading stops a running
; service first and starts it again after; the uninstaller stops and removes it (%ProgramData%\appliance stays).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\appliance"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"
#define StartupApprovedKey "Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"

[Setup]
AppId={{6F0C5F0E-4C36-4B8E-9E55-4A5C0B7E2D31}
AppName=appliance
AppVersion={#AppVersion}
AppVerName=appliance {#AppVersion}
AppPublisher=appliance
AppComments=Serve TensorFlow models on this computer over a local REST API
; {autopf}: %LOCALAPPDATA%\Programs per user (the default), Program Files when installing for all users.
DefaultDirName={autopf}\appliance
DefaultGroupName=appliance
DisableProgramGroupPage=yes
DisableDirPage=auto
PrivilegesRequired=lowest
; The first dialog asks "for me only" (no administrator rights) or "for all users" (administrator: the service).
PrivilegesRequiredOverridesAllowed=dialog commandline
; The Run value of "Start at login" stays the installing user's (HKCU) in an all-users install too.
UsedUserAreasWarning=no
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=appliance-{#AppVersion}-setup
#ifdef SetupIcon
SetupIconFile={#SetupIcon}
#endif
UninstallDisplayIcon={app}\appliance.exe
UninstallDisplayName=appliance
; ~1.2 GB of files: lzma2 solid compression takes a few minutes but makes the download much smaller.
Compression=lzma2
SolidCompression=yes
LZMANumBlockThreads=4
WizardStyle=modern
CloseApplications=yes
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "startatlogin"; Description: "Start appliance when I log in"; GroupDescription: "Options:"; Flags: unchecked
Name: "service"; Description: "Run as a service (serves from boot, for all users; needs administrator rights)"; GroupDescription: "Options:"; Flags: unchecked; Check: IsAdminInstallMode

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\appliance"; Filename: "{app}\appliance.exe"; Comment: "Serve TensorFlow models over a local REST API"
Name: "{group}\Uninstall appliance"; Filename: "{uninstallexe}"

[Registry]
; The same value as appliance.autostart.WindowsRunKey writes (name "appliance", the path quoted only when it has
; a space, as subprocess.list2cmdline does): the app's own toggle shows it as on and can switch it off.
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "appliance"; ValueData: "{code:RunCommand}"; Tasks: startatlogin; Flags: uninsdeletevalue

[Run]
Filename: "{app}\appliance-cli.exe"; Parameters: "service install"; StatusMsg: "Installing and starting the appliance service..."; Tasks: service; Flags: runhidden waituntilterminated
; The service serves on the default port already: no desktop app beside it from here.
Filename: "{app}\appliance.exe"; Description: "Start appliance now"; Tasks: not service; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop and remove the service first, so that its program's files can be removed ("not installed": nothing done).
Filename: "{app}\appliance-cli.exe"; Parameters: "service uninstall"; Flags: runhidden waituntilterminated; RunOnceId: "RemoveService"; Check: IsAdminInstallMode
; Stop this user's running appliance so that its files can be removed.
Filename: "{sys}\taskkill.exe"; Parameters: "/IM appliance.exe /F"; Flags: runhidden; RunOnceId: "StopAppliance"

[Code]
var
  ServiceWasRunning: Boolean;

function ServiceIsRunning(): Boolean;
var
  ResultCode: Integer;
begin
  // sc.exe query prints "STATE : 4  RUNNING"; find.exe exits 0 when the line is there.
  Result := Exec(ExpandConstant('{cmd}'), '/C ' + ExpandConstant('{sys}') + '\sc.exe query appliance | ' +
    ExpandConstant('{sys}') + '\find.exe "RUNNING"', '', SW_HIDE, ewWaitUntilTerminated, ResultCode) and (ResultCode = 0);
end;

// An upgrade replaces the files the running service uses: stop it first (gracefully, as `sc stop` does), and
// start it again after (CurStepChanged), unless the "service" task installs it again anyway.
function PrepareToInstall(var NeedsRestart: Boolean): String;
var
  ResultCode, Waited: Integer;
begin
  Result := '';
  ServiceWasRunning := IsAdminInstallMode and ServiceIsRunning();
  if ServiceWasRunning then
  begin
    Exec(ExpandConstant('{sys}\sc.exe'), 'stop appliance', '', SW_HIDE, ewWaitUntilTerminated, ResultCode);
    Waited := 0;
    while ServiceIsRunning() and (Waited < 60000) do
    begin
      Sleep(500);
      Waited := Waited + 500;
    end;
    // STOP_PENDING until the process has exited: wait for its files to be free too.
    Sleep(2000);
  end;
end;

procedure CurStepChanged(CurStep: TSetupStep);
var
  ResultCode: Integer;
begin
  if (CurStep = ssPostInstall) and ServiceWasRunning and not WizardIsTaskSelected('service') then
    Exec(ExpandConstant('{sys}\sc.exe'), 'start appliance', '', SW_HIDE, ewWaitUntilTerminated, ResultCode);
end;

function RunCommand(Param: String): String;
begin
  Result := AddQuotes(ExpandConstant('{app}\appliance.exe'));
end;

// The tray's "Start at login" may have written the Run value after installation (or Task Manager's
// StartupApproved flag): remove both whoever wrote them, so that nothing starts a removed program at login.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usUninstall then
  begin
    RegDeleteValue(HKEY_CURRENT_USER, '{#RunKey}', 'appliance');
    RegDeleteValue(HKEY_CURRENT_USER, '{#StartupApprovedKey}', 'appliance');
  end;
end;
